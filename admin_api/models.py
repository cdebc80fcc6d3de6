"""Shared pydantic building blocks for admin API bodies (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class StrictModel(BaseModel):
    """A request body: unknown fields are an error, strings are not coerced from numbers."""

    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=False)


def _valid_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA time zone") from None
    return value


TimeZoneName = Annotated[str, Field(min_length=1, max_length=64, examples=["Asia/Tokyo"]), AfterValidator(_valid_timezone)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^\S+$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
