"""Process settings, read once from the environment (INTERFACES.md).

One object, validated at start-up: a bad value stops the process with a
message naming the variable, instead of failing later mid-request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting from the environment is missing or malformed."""


class Settings(BaseSettings):
    """Everything a web or worker process needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    port: int = Field(default=8080, ge=1, le=65535)
    host: str = "0.0.0.0"
    mongodb_uri: str | None = None
    mongodb_db: str = "linecrm"
    data_dir: Path = Path("./data")
    line_api_base: str = "https://api.line.me"
    line_data_api_base: str = "https://api-data.line.me"
    line_login_base: str = "https://access.line.me"
    operator_token: SecretStr | None = None
    public_base_url: str | None = None
    line_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    log_level: str = "INFO"
    # Webhook handling after the acknowledgement: events waiting or in hand at most (beyond: 503, LINE
    # redelivers), and how many batches are handled at once.
    webhook_queue_max: int = Field(default=2000, ge=1, le=100_000)
    webhook_workers: int = Field(default=4, ge=1, le=64)

    @field_validator("line_api_base", "line_data_api_base", "line_login_base", "public_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("mongodb_uri", "operator_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must be a mongodb:// or mongodb+srv:// connection string")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @model_validator(mode="after")
    def _default_public_base(self) -> Settings:
        if self.public_base_url is None:
            self.public_base_url = f"http://localhost:{self.port}"
        return self

    @property
    def public_base(self) -> str:
        """Absolute base for links we put in messages (never None after validation)."""
        assert self.public_base_url is not None
        return self.public_base_url


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus explicit overrides) or raise SettingsError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
