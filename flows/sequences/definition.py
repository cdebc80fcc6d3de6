"""What a merchant defines as a step sequence (ステップ配信), and every rule its definition must keep.

A sequence: a trigger (follow, link, page view matching a URL substring or a
product, add to cart, purchase, tag added) → ordered steps, each a wait, an
optional filter checked just before the send, and 1–5 LINE message objects →
an optional send window (weekdays and hours, shop time) → an optional goal
(a page view matching a URL substring, or a purchase, within N days of entry)
that ends the customer's run and counts a conversion → `reentry`.

pydantic checks each field; `problems` checks what spans fields and what LINE
would refuse (the message schema from LINE's OpenAPI document, LINE's size
limits, our placeholders), so a bad definition is refused with the field named
and nothing is stored. Pure: no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from core.identifiers import IDENTIFIER_PATTERN
from core.line_limits import MAX_TEXT, utf16_len
from core.line_schema import message_errors
from storage.shop_settings import ClockTime

log = logging.getLogger("linecrm.sequences")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WAIT_MINUTES = 90 * 24 * 60
MAX_STEPS = 20
STATE_PREFIX = "seq:"  # a run's key in the contact's `flows`, and the sequence's flow name in records
RESERVED_IDS = frozenset({"dry-run"})  # route names under /sequences/

# Text placeholders and the most UTF-16 units each can expand to (the renderer truncates to this).
PLACEHOLDERS: dict[str, int] = {"display_name": 100, "points": 15}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

TriggerEvent = Literal["follow", "link", "page_view", "add_to_cart", "purchase", "tag_added"]
GoalEvent = Literal["page_view", "purchase"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
UrlPart = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")]
ProductId = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
TagName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
UtmValue = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Count = Annotated[int, Field(strict=True, ge=0, le=1_000_000_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Trigger(_Strict):
    event: TriggerEvent
    url_contains: UrlPart | None = Field(default=None, description="page_view / add_to_cart: the page URL contains this")
    product_id: ProductId | None = Field(default=None, description="page_view / add_to_cart: this product")
    tag: TagName | None = Field(default=None, description="tag_added: this tag (required)")


class Range(_Strict):
    min: Count | None = None
    max: Count | None = None


class Utm(_Strict):
    """The customer's first visit's UTM parameters (compared case-insensitively)."""

    source: UtmValue | None = None
    medium: UtmValue | None = None
    campaign: UtmValue | None = None
    term: UtmValue | None = None


class StepFilter(_Strict):
    """Checked just before the step's send; every given field must hold, else the step is skipped."""

    first_seen_within_days: Annotated[int, Field(strict=True, ge=1, le=3650)] | None = None
    total_spent: Range | None = Field(default=None, description="yen, paid orders")
    purchase_count: Range | None = None
    utm: Utm | None = None
    tags_all: list[TagName] | None = Field(default=None, max_length=50)
    tags_none: list[TagName] | None = Field(default=None, max_length=50)


class Step(_Strict):
    wait_minutes: int = Field(strict=True, ge=1, le=MAX_WAIT_MINUTES,
                              description="after the trigger (step 1) or the previous step (the others)")
    filter: StepFilter | None = None
    messages: list[dict[str, Any]] = Field(
        min_length=1, max_length=5,
        description="LINE message objects; text may use {display_name} and {points}")


class SendWindow(_Strict):
    weekdays: list[Weekday] = Field(min_length=1, max_length=7)
    start: ClockTime
    end: ClockTime  # may be before start: the window crosses midnight

    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    def end_time(self) -> time:
        return time.fromisoformat(self.end)

    def weekday_numbers(self) -> frozenset[int]:
        return frozenset(WEEKDAYS.index(day) for day in self.weekdays)


class Goal(_Strict):
    event: GoalEvent
    url_contains: UrlPart | None = Field(default=None, description="page_view: the page URL contains this")
    within_days: int = Field(strict=True, ge=1, le=365, description="counted from the customer's entry")


class SequenceDefinition(_Strict):
    """`PUT /sequences/{sequence_id}` (INTERFACES.md "Step sequences")."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]
    enabled: bool = Field(default=True, strict=True)
    trigger: Trigger
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    window: SendWindow | None = None
    goal: Goal | None = None
    reentry: bool = Field(default=False, strict=True,
                          description="false: a customer who finished or left never enters again")


def problems(definition: SequenceDefinition) -> tuple[str, str] | None:
    """The first rule the definition breaks beyond single fields, as (field, message); None when valid."""
    for problem in _problems(definition):
        return problem
    return None


def _problems(definition: SequenceDefinition) -> Iterator[tuple[str, str]]:
    trigger = definition.trigger
    if trigger.event == "tag_added" and trigger.tag is None:
        yield "trigger.tag", "required for the tag_added trigger"
    if trigger.tag is not None and trigger.event != "tag_added":
        yield "trigger.tag", "only for the tag_added trigger"
    for name in ("url_contains", "product_id"):
        if getattr(trigger, name) is not None and trigger.event not in ("page_view", "add_to_cart"):
            yield f"trigger.{name}", "only for the page_view and add_to_cart triggers"
    window = definition.window
    if window is not None:
        if len(set(window.weekdays)) != len(window.weekdays):
            yield "window.weekdays", "each weekday at most once"
        if window.start == window.end:
            yield "window.end", "must differ from start (an empty window never opens)"
    goal = definition.goal
    if goal is not None and goal.url_contains is not None and goal.event != "page_view":
        yield "goal.url_contains", "only for the page_view goal"
    for index, step in enumerate(definition.steps):
        yield from _step_problems(step, f"steps[{index}]")


def _step_problems(step: Step, path: str) -> Iterator[tuple[str, str]]:
    rules = step.filter
    if rules is not None:
        for name in ("total_spent", "purchase_count"):
            bounds: Range | None = getattr(rules, name)
            if bounds is not None and bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
                yield f"{path}.filter.{name}.max", "must be at least min"
        if rules.utm is not None and not rules.utm.model_dump(exclude_none=True):
            yield f"{path}.filter.utm", "name at least one of source, medium, campaign, term"
        if rules.tags_all and rules.tags_none and set(rules.tags_all) & set(rules.tags_none):
            yield f"{path}.filter.tags_none", "a tag cannot be both required and excluded"
    for where, refusal in message_errors(step.messages, prefix=f"{path}.messages"):
        yield where, f"LINE would refuse this message: {refusal}"
    for index, message in enumerate(step.messages):
        if message.get("type") != "text" or not isinstance(message.get("text"), str):
            continue
        text: str = message["text"]
        field = f"{path}.messages[{index}].text"
        unknown = sorted({name for name in PLACEHOLDER.findall(text) if name not in PLACEHOLDERS})
        if unknown:
            known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
            yield field, f"unknown placeholder {{{unknown[0]}}} (known: {known})"
        elif longest_text(text) > MAX_TEXT:
            yield field, f"at most {MAX_TEXT} characters (UTF-16 units) with its placeholders filled in"


MAX_DEPTH = 40  # Flex nests boxes, but never this deep
INT64 = 2**63


def storable_problem(definition: SequenceDefinition) -> tuple[str, str] | None:
    """Why the messages (free-form JSON) could not be stored as they are: keys MongoDB refuses, numbers
    beyond 64 bits, text that is not Unicode, nesting deeper than any LINE message (checked first, so the
    schema walk never recurses without bound)."""
    for index, step in enumerate(definition.steps):
        for position, message in enumerate(step.messages):
            found = _storable(message, f"steps[{index}].messages[{position}]", 0)
            if found is not None:
                return found
    return None


def _storable(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if depth > MAX_DEPTH:
        return path, f"nested more than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "." in key or "\x00" in key:
                return path, f"the key {key!r} is not a LINE message property"
            found = _storable(item, f"{path}.{key}", depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found = _storable(item, f"{path}[{position}]", depth + 1)
            if found is not None:
                return found
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "text must be valid Unicode"
    elif isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        return path, "number out of range"
    return None


def longest_text(template: str) -> int:
    """UTF-16 units of the text when every placeholder expands to its longest value."""
    return utf16_len(PLACEHOLDER.sub(lambda m: "x" * PLACEHOLDERS.get(m.group(1), len(m.group(0))), template))


def shortened_waits(before: SequenceDefinition | None, after: SequenceDefinition) -> bool:
    """Whether an edit makes some step's wait shorter (runs already waiting on it must be looked at sooner)."""
    if before is None:
        return False
    return any(new.wait_minutes < old.wait_minutes for old, new in zip(before.steps, after.steps, strict=False))


def state_key(sequence_id: str) -> str:
    """The run's key in a contact's `flows` ("." is not allowed in a key; "%" never occurs in an ID)."""
    return STATE_PREFIX + sequence_id.replace("%", "%25").replace(".", "%2E")


def sequence_id_of(key: str) -> str:
    return key[len(STATE_PREFIX):].replace("%2E", ".").replace("%25", "%")


def flow_name(sequence_id: str) -> str:
    """The sequence's name in delivery records, retry keys, conversions and reports."""
    return STATE_PREFIX + sequence_id


@dataclass(frozen=True)
class LoadedSequence:
    """A stored sequence as the flow and the listeners use it."""

    sequence_id: str
    gen: str
    definition: SequenceDefinition

    @property
    def key(self) -> str:
        return state_key(self.sequence_id)

    @property
    def flow(self) -> str:
        return flow_name(self.sequence_id)


def load(doc: Mapping[str, Any]) -> LoadedSequence | None:
    """A stored document as a sequence (None for one that no longer validates: it is left alone, not run)."""
    try:
        definition = SequenceDefinition.model_validate(doc.get("definition") or {})
    except ValidationError:
        log.error("sequence %s does not validate; it is not run", doc.get("_id"))
        return None
    return LoadedSequence(str(doc["sequence_id"]), str(doc.get("gen") or ""), definition)
