from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "HOST", "MONGODB_URI", "MONGODB_DB", "DATA_DIR", "LINE_API_BASE", "LINE_DATA_API_BASE",
                 "LINE_LOGIN_BASE", "OPERATOR_TOKEN", "PUBLIC_BASE_URL", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_interfaces() -> None:
    settings = load_settings()
    assert settings.port == 8080
    assert settings.mongodb_uri is None
    assert settings.data_dir == Path("./data")
    assert settings.line_api_base == "https://api.line.me"
    assert settings.line_data_api_base == "https://api-data.line.me"
    assert settings.line_login_base == "https://access.line.me"
    assert settings.operator_token is None
    assert settings.public_base == "http://localhost:8080"


def test_public_base_follows_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    assert load_settings().public_base == "http://localhost:9000"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("PORT", "eighty", "PORT"),
        ("PORT", "70000", "PORT"),
        ("MONGODB_URI", "postgres://x", "MONGODB_URI"),
        ("LINE_API_BASE", "api.line.me", "LINE_API_BASE"),
        ("PUBLIC_BASE_URL", "ftp://x", "PUBLIC_BASE_URL"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
    ],
)
def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_empty_operator_token_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_TOKEN", "")
    assert load_settings().operator_token is None


def test_secrets_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_TOKEN", "very-secret-value")
    assert "very-secret-value" not in repr(load_settings())
