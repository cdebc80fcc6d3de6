"""`make bench` (`python -m bench`) lists the benchmarks that exist; an unknown name is an error."""

from __future__ import annotations

import pytest

from bench.__main__ import benchmarks, main


def test_make_bench_lists_every_benchmark_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"reminders", "webhook", "events", "admin_bulk"} <= set(benchmarks())
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in benchmarks())
    assert main(["no-such-bench"]) == 2
