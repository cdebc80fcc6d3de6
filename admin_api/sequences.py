"""Admin routes of step sequences: define, read, delete, report, dry run (thin: parse → domain → reply)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.models import Identifier, Instant, ReportQuery, StrictModel, path_id, report_period
from admin_api.registry import SHOP_PATH, AdminApi, Call, Reply
from admin_api.reminders import FlowReportView
from core.errors import ApiError
from delivery.report import StepReport
from flows.sequences.definition import (
    RESERVED_IDS,
    Goal,
    SendWindow,
    SequenceDefinition,
    Step,
    Trigger,
    load,
    problems,
    shortened_waits,
    state_key,
    storable_problem,
)
from flows.sequences.preview import dry_run
from flows.sequences.report import sequence_report
from storage.contacts import ContactRepository
from storage.database import Document
from storage.sequences import SequenceRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`


class SequenceView(BaseModel):
    sequence_id: str
    name: str
    enabled: bool
    trigger: Trigger
    steps: list[Step]
    window: SendWindow | None
    goal: Goal | None
    reentry: bool
    version: int
    created_at: datetime
    updated_at: datetime


class SequenceList(BaseModel):
    items: list[SequenceView]


class SequenceStepReport(StepReport):
    entered: int = Field(description="runs that reached this step (sent, skipped, held back or failed)")
    filtered: dict[str, int] = Field(description="skipped by the step's filter, by the check that failed")


class SequenceReport(FlowReportView):
    steps: list[SequenceStepReport]  # type: ignore[assignment]
    sequence_id: str
    name: str | None
    entered: int = Field(description="runs started in the period")
    goal_reached: int = Field(description="runs that reached the goal in the period")
    goal_reached_after_message: int = Field(description="of which after a message of the run (sent or held back)")
    conversions: int = Field(description="orders after a message within the attribution window, and goals "
                                         "reached after a message (each order once)")


class DryRunQuery(StrictModel):
    line_user_id: Identifier
    at: Instant | None = Field(default=None, description="the moment to evaluate (ISO 8601 with offset); default now")


def sequence_view(doc: Document) -> dict[str, Any]:
    """The definition as stored (what was PUT, defaults filled in, unset options left out)."""
    definition = doc["definition"]
    return {**definition, "window": definition.get("window"), "goal": definition.get("goal"),
            "sequence_id": doc["sequence_id"], "version": doc.get("version", 1),
            "created_at": doc["created_at"], "updated_at": doc["updated_at"]}


def _sequence_id(call: Call[Any, Any]) -> str:
    sequence_id = path_id(call, "sequence_id")
    if sequence_id in RESERVED_IDS:
        raise ApiError(422, "validation_error", f"sequence_id: {sequence_id!r} is reserved", "sequence_id")
    return sequence_id


# Registered before `/sequences/{sequence_id}`, which would otherwise take "dry-run" as an ID.
@routes.route("GET", SHOP_PATH + "/sequences/dry-run",
              summary="The sequences a customer is in, each run's next step, when, and whether its filter passes now "
                      "(nothing is sent or claimed)",
              query=DryRunQuery, tag="sequences", extra_statuses={404: "unknown customer"})
async def sequence_dry_run(call: Call[None, DryRunQuery]) -> dict[str, Any]:
    at = call.query.at.astimezone(UTC) if call.query.at else call.now()
    result = await dry_run(call.db, call.current_shop.shop_id, call.query.line_user_id, at)
    if result is None:
        raise ApiError(404, "not_found", "no such customer", "line_user_id")
    return result


@routes.route("PUT", SHOP_PATH + "/sequences/{sequence_id}",
              summary="Create or replace a step sequence (an edit applies to every step not yet sent)",
              body=SequenceDefinition, response=SequenceView, tag="sequences", extra_statuses={201: "Created"})
async def put_sequence(call: Call[SequenceDefinition, None]) -> Reply:
    sequence_id = _sequence_id(call)
    definition = call.body
    problem = storable_problem(definition) or problems(definition)
    if problem is not None:
        field, message = problem
        raise ApiError(422, "validation_error", f"{field}: {message}", field)
    shop_id = call.current_shop.shop_id
    now = call.now()
    stored = definition.model_dump(mode="json", exclude_none=True)
    doc, before = await SequenceRepository(call.db).put(shop_id, sequence_id, stored, now)
    previous = load(before) if before is not None else None
    if previous is not None and previous.gen == doc["gen"] and shortened_waits(previous.definition, definition):
        await ContactRepository(call.db).wake_flow(shop_id, state_key(sequence_id), now,
                                                   {"status": "running", "gen": doc["gen"]})
    return Reply(201 if before is None else 200, sequence_view(doc))


@routes.route("GET", SHOP_PATH + "/sequences", summary="List the shop's step sequences", response=SequenceList,
              tag="sequences")
async def list_sequences(call: Call[None, None]) -> dict[str, Any]:
    docs = await SequenceRepository(call.db).of_shop(call.current_shop.shop_id)
    return {"items": [sequence_view(doc) for doc in docs]}


@routes.route("GET", SHOP_PATH + "/sequences/{sequence_id}", summary="Read a step sequence", response=SequenceView,
              tag="sequences")
async def get_sequence(call: Call[None, None]) -> dict[str, Any]:
    doc = await SequenceRepository(call.db).get(call.current_shop.shop_id, _sequence_id(call))
    if doc is None:
        raise ApiError(404, "not_found", "no such sequence", "sequence_id")
    return sequence_view(doc)


@routes.route("DELETE", SHOP_PATH + "/sequences/{sequence_id}",
              summary="Delete a step sequence: every run stops (nothing more is sent) and nobody enters it",
              status=204, tag="sequences")
async def delete_sequence(call: Call[None, None]) -> None:
    if not await SequenceRepository(call.db).delete(call.current_shop.shop_id, _sequence_id(call)):
        raise ApiError(404, "not_found", "no such sequence", "sequence_id")


@routes.route("GET", SHOP_PATH + "/reports/sequences/{sequence_id}",
              summary="A step sequence's report per step over a period: entered, sent, filtered, goals, conversions",
              query=ReportQuery, response=SequenceReport, tag="reports")
async def sequence_report_route(call: Call[None, ReportQuery]) -> dict[str, Any]:
    sequence_id = _sequence_id(call)
    shop_id = call.current_shop.shop_id
    start, end = report_period(call)
    doc = await SequenceRepository(call.db).get(shop_id, sequence_id)
    loaded = load(doc) if doc is not None else None
    steps = len(loaded.definition.steps) if loaded is not None else 0
    report = await sequence_report(call.db, shop_id, sequence_id, steps, start, end)
    return {**report, "name": loaded.definition.name if loaded is not None else None}
