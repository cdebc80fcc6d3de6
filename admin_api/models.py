"""Shared building blocks of admin API inputs: strict bodies, IDs, yen, tags, paging.

Every route family validates these alike (unknown fields refused, field named on error).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from core.clock import as_utc
from core.errors import ApiError
from core.identifiers import IDENTIFIER_PATTERN, IDENTIFIER_RULE
from storage.paging import decode_cursor

if TYPE_CHECKING:
    from admin_api.registry import Call


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
# Secrets and tokens are printable ASCII without spaces (LINE's are): no control or non-ASCII character.
Token = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[\x21-\x7e]+$")]
# A name a person reads: no control characters (C0, DEL, C1).
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]


Yen = Annotated[int, Field(strict=True, ge=0, le=1_000_000_000, description="yen, integer")]
Stock = Annotated[int, Field(strict=True, ge=0, le=100_000_000)]
Url = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
Tags = Annotated[list[Tag], Field(max_length=100)]
Limit = Annotated[int, Field(ge=1, le=200)]

_IDENTIFIER = TypeAdapter(Identifier)
T = TypeVar("T")


def unique(items: list[T], key: Callable[[T], str], what: str) -> list[T]:
    """For list validators: the same ID twice in one body is a mistake, not a last-wins."""
    seen: set[str] = set()
    for item in items:
        if key(item) in seen:
            raise ValueError(f"duplicate {what} {key(item)!r}")
        seen.add(key(item))
    return items


def path_id(call: Call[Any, Any], name: str) -> str:
    """A path ID checked like a body ID (422 naming the parameter when it is not one)."""
    value = call.path(name)
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        raise ApiError(422, "validation_error", f"{name}: must be {IDENTIFIER_RULE}", name) from None


def to_millis(at: datetime) -> datetime:
    """MongoDB keeps milliseconds: truncate first, so a replay compares equal to what was stored."""
    at = as_utc(at)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class TimeCursorQuery(StrictModel):
    """Paging newest first: `after` is the `next_after` of the previous page."""

    limit: Limit = 50
    after: Annotated[str, StringConstraints(max_length=300)] | None = None

    @field_validator("after")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)  # ValueError -> 422 naming `after`
        return value


MAX_PERIOD = timedelta(days=366)


def _moment(value: object) -> object:
    """An ISO date (a whole day in shop time) or an ISO date-time with an offset."""
    if not isinstance(value, str):
        return value
    if len(value) == 10:
        return date.fromisoformat(value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a date-time needs a time zone offset, e.g. 2026-12-01T00:00:00+09:00")
    return moment


Moment = Annotated[date | datetime, BeforeValidator(_moment)]
Instant = Annotated[datetime, BeforeValidator(_moment)]


class ReportQuery(StrictModel):
    from_: Moment | None = Field(default=None, alias="from",
                                 description="start: ISO date (shop time) or date-time; default 30 days ago")
    to: Moment | None = Field(default=None, description="end: inclusive for a date; default now")


def _bound(value: datetime | date | None, zone: ZoneInfo, *, end: bool, default: datetime) -> datetime:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def report_period(call: Call[Any, ReportQuery]) -> tuple[datetime, datetime]:
    """[start, end) in UTC from `from`/`to` (dates are whole days in the shop's time zone); at most 366 days."""
    now = call.now()
    zone = ZoneInfo(call.current_shop.timezone)
    try:
        start = _bound(call.query.from_, zone, end=False, default=now - timedelta(days=30))
    except OverflowError:
        raise ApiError(422, "validation_error", "from: out of range", "from") from None
    try:
        end = _bound(call.query.to, zone, end=True, default=now + timedelta(seconds=1))
    except OverflowError:  # the day after 9999-12-31
        raise ApiError(422, "validation_error", "to: out of range", "to") from None
    if end <= start:
        raise ApiError(422, "validation_error", "to: must be after from", "to")
    if end - start > MAX_PERIOD:
        raise ApiError(422, "validation_error", "to: a period is at most 366 days", "to")
    return start, end
