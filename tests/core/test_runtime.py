"""The worker's garbage-collector tuning: thresholds raised, start-up objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core.runtime import MIDDLE_THRESHOLD, OLD_THRESHOLD, YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_raises_thresholds_and_freezes_start_up_objects() -> None:
    gc.unfreeze()
    tune_garbage_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    assert gc.get_freeze_count() > 1000
    assert gc.isenabled()
