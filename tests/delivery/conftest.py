"""The reminders scenario `world` for engine tests (a shop, its customers, linesim)."""

from tests.flows.reminders.conftest import world  # noqa: F401 - a fixture, used by name
