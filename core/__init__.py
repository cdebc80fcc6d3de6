"""Shared basics beneath every other package: clock, settings, errors, LINE limits, the LINE client, Flex parts.

Imports nothing of ours (tests/test_layers.py checks it), so storage, the flows
and the entry points can all use it.
"""
