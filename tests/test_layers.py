"""The package layers point one way (pyproject.toml's import-linter contracts).

entry points (bot, admin_api, scheduler, linking's pages) → flows → delivery →
storage → core; linking's logic is domain code; nothing in production imports
linesim. A forbidden import anywhere fails this test with the offending line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_a_forbidden_import_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The check can fail: with `core` declared above `storage`, storage's imports of core break the contract."""
    monkeypatch.chdir(ROOT)
    config = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text()
    config.write_text(text.replace('    "storage",\n    "core",', '    "core",\n    "storage",'))
    assert lint_imports(config_filename=str(config), no_cache=True) != 0
