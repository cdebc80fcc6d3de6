"""Step sequences as a flow of the delivery engine: one run per customer and sequence, planned purely.

A run lives in the customer's contact under `flows.seq:<sequence id>`:
  run (its id, part of every retry key), gen (the sequence's generation it
  belongs to), status ("running", then "done", "goal" or "ended"), trigger,
  trigger_event, entered_at, next_step (0-based), anchor (when the next step's
  wait started), due_at, ended_at, end_reason, goal_at, goal_event, tag_present, first_visit (the
  customer's first visit to the site, `storage.first_visits`, for the filters; kept current at links).
The listeners (`flows.sequences.ingest`) start runs and end them at the goal;
the engine asks this flow, when a run is due, what to do now:
- the sequence was deleted (or deleted and made again: another `gen`) → end "deleted"; switched off → end
  "disabled" (nothing more is sent either way);
- the step's wait (as defined now: an edit applies to every step not yet handled) has not passed → wait;
- its filter fails → skip with "filter:<check>" and go on to the next step (the last one ends the run "done");
- otherwise → send its messages (placeholders filled in) inside the sequence's send window; the policy
  (reachable, window, frequency cap, holdout) decides the rest.
Each step's retry key names the shop, customer, sequence, run and step, so it is sent at most once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from core.clock import as_utc
from core.flex import compact_json
from delivery.flow import Intent, delivery_key
from flows.sequences.definition import STATE_PREFIX, LoadedSequence, Step, load, sequence_id_of
from flows.sequences.filters import failed_check, skip_reason
from flows.sequences.render import personal, render
from flows.sequences.timing import send_window, step_due
from storage.contacts import Lookup
from storage.database import Database, Document
from storage.sequences import SequenceRepository

FLOW = "sequences"  # the flow object's name; each sequence records under its own name, "seq:<id>"
RUNNING = "running"


def advance(steps: list[Step], index: int, moment: datetime, now: datetime) -> dict[str, Any]:
    """The run after step `index` was handled at `moment` (sent, held, skipped): the next step's wait starts."""
    after = index + 1
    if after < len(steps):
        return {"next_step": after, "anchor": moment, "due_at": step_due(moment, steps[after])}
    return {"next_step": after, "status": "done", "due_at": None, "ended_at": now, "end_reason": "done"}


class SequencesFlow:
    """Every step sequence of every shop (one object per engine run, caching the run's definitions)."""

    name = FLOW
    lookups: tuple[Lookup, ...] = ()  # a run carries its customer's first visit: nothing else to join

    def __init__(self) -> None:
        self._shops: dict[str, dict[str, LoadedSequence]] = {}
        # A step's JSON when it is the same for every customer (no placeholder): encoded once per run.
        self._encoded: dict[tuple[str, str, int], bytes | None] = {}

    def owns(self, state_key: str) -> bool:
        return state_key.startswith(STATE_PREFIX)

    async def prepare(self, database: Database, shop_ids: Collection[str]) -> None:
        missing = sorted(s for s in shop_ids if s not in self._shops)
        if not missing:
            return
        for shop_id, docs in (await SequenceRepository(database).for_shops(missing)).items():
            loaded = (load(doc) for doc in docs)
            self._shops[shop_id] = {s.sequence_id: s for s in loaded if s is not None}

    def sequence(self, shop_id: str, sequence_id: str) -> LoadedSequence | None:
        return self._shops.get(shop_id, {}).get(sequence_id)

    def plan(self, contact: Document, state_key: str, state: Mapping[str, Any], now: datetime) -> Intent:
        shop_id = str(contact.get("shop_id") or "")
        user = str(contact.get("line_user_id") or "")
        sequence_id = sequence_id_of(state_key)
        loaded = self.sequence(shop_id, sequence_id)
        flow = loaded.flow if loaded is not None else STATE_PREFIX + sequence_id
        run = str(state.get("run") or "")
        expects = {"run": state.get("run"), "status": state.get("status"), "next_step": state.get("next_step")}

        def end(reason: str, status: str = "ended") -> Intent:
            return Intent(flow=flow, state_key=state_key, kind="end", reason=reason, expects=expects,
                          state={"due_at": None, "status": status, "ended_at": now, "end_reason": reason})

        if state.get("status") != RUNNING:
            return Intent(flow=flow, state_key=state_key, kind="end", state={"due_at": None},
                          reason=str(state.get("end_reason") or state.get("status") or "ended"), expects=expects)
        if loaded is None or loaded.gen != state.get("gen"):
            return end("deleted")
        definition = loaded.definition
        if not definition.enabled:
            return end("disabled")
        index = int(state.get("next_step") or 0)
        if index >= len(definition.steps):  # an edit removed the steps it was waiting for
            return end("done", "done")
        step = definition.steps[index]
        anchor = as_utc(state.get("anchor") or state.get("entered_at") or now)
        due = step_due(anchor, step)
        if now < due:
            return Intent(flow=flow, state_key=state_key, kind="wait", state={"due_at": due}, due_at=due,
                          expects=expects)
        # When the step fell due: later than its wait when a window or the cap held it back (the next wait
        # counts from then), never earlier than its wait (a run woken by an edit).
        moment = max(as_utc(state.get("due_at") or due), due)
        common: dict[str, Any] = {
            "flow": flow, "state_key": state_key, "state": advance(definition.steps, index, moment, now),
            "step": index + 1, "cycle": run, "due_at": moment, "expects": expects,
            "key": delivery_key(shop_id, user, flow, run, index + 1),
        }
        customer = contact.get("customer")
        check = failed_check(step.filter, customer, state.get("first_visit"), now)
        if check is not None:
            return Intent(kind="skip", reason=skip_reason(check), **common)
        cache = (shop_id, sequence_id, index)
        if cache not in self._encoded:
            self._encoded[cache] = None if personal(step.messages) else compact_json(step.messages)
        encoded = self._encoded[cache]
        messages = step.messages if encoded is not None else render(step.messages, customer)
        return Intent(kind="send", messages=messages, encoded=encoded, window=send_window(definition.window),
                      **common)
