"""Segment tests use the broadcast scenarios' world (customers, segments, the admin API, linesim)."""

from tests.flows.broadcasts.conftest import world

__all__ = ["world"]
