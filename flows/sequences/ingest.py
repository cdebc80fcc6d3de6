"""The step sequences' ingest listeners: triggers start runs, goals end them (connected in `flows.listeners`).

Each signal becomes `Happening`s per customer; when one of the shop's
sequences cares about such a happening, the customer's runs are read (one
read for the batch) and `entry.decide` says what to write. Every write goes
through `ContactRepository.put_flow_state`, conditional on the run and status
that were read: when another process changed the run meanwhile, the customer is
read again and decided again. Entries and goals are recorded in
`sequence_runs`, and a goal that follows a message of the run (sent, or held
back for the holdout) is that message's conversion — recorded where every
flow's conversions are, so the report's holdout figures and lift use it.
Listeners run twice safely (replays decide the same runs, records are
idempotent) and never send.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from core.clock import as_utc
from delivery.attribution import ATTRIBUTED, record_time
from flows.sequences.definition import STATE_PREFIX, LoadedSequence, load
from flows.sequences.entry import Action, Happening, HappeningKind, decide, relevant
from storage.browsers import BrowserRepository
from storage.contacts import ContactRepository
from storage.database import Database, Document
from storage.delivery_log import DeliveryLog
from storage.first_visits import first_visit
from storage.keys import compose, customer_key
from storage.sequences import SequenceRepository, SequenceRuns
from storage.signals import RetryLater

log = logging.getLogger("linecrm.sequences")

ATTEMPTS = 3
ORDER_TRIGGER_MAX_AGE = timedelta(days=1)  # an older order (an import of history) never starts a run
BROWSER_KINDS: dict[str, HappeningKind] = {"page_view": "page_view", "add_to_cart": "add_to_cart",
                                           "purchase": "purchase"}


def _ms(at: datetime) -> int:
    return int(as_utc(at).timestamp() * 1000)


async def shop_sequences(database: Database, shop_id: str) -> list[LoadedSequence]:
    loaded = (load(doc) for doc in await SequenceRepository(database).of_shop(shop_id))
    return [sequence for sequence in loaded if sequence is not None]


# --- the signals, as happenings ---

async def on_browser_events(database: Database, shop_id: str, events: list[dict[str, Any]], now: datetime) -> None:
    """Linked customers' page views, adds to cart and purchases (unlinked browsers' events name nobody)."""
    by_user: dict[str, list[Happening]] = defaultdict(list)
    for event in events:
        user, kind = event.get("line_user_id"), BROWSER_KINDS.get(str(event.get("type")))
        if not user or kind is None or not event.get("event_id"):
            continue
        by_user[str(user)].append(Happening(
            kind, f"ev:{event['event_id']}", as_utc(event.get("received_at") or now), url=event.get("url"),
            product_id=event.get("product_id"), order_id=event.get("order_id"), revenue=int(event.get("value") or 0)))
    await process(database, shop_id, by_user, as_utc(now))


async def on_order_recorded(database: Database, order: dict[str, Any], previous: dict[str, Any] | None,
                            now: datetime) -> None:
    """An order that became paid: a purchase (a trigger only when recent, a goal within the goal's days)."""
    user = order.get("line_user_id")
    if order.get("status") != "paid" or not user or (previous or {}).get("status") == "paid":
        return
    now = as_utc(now)
    ordered_at = min(as_utc(order.get("ordered_at") or order.get("created_at") or now), now)
    happening = Happening("purchase", f"order:{order['order_id']}", ordered_at, order_id=str(order["order_id"]),
                          revenue=int(order.get("total") or 0), can_trigger=ordered_at >= now - ORDER_TRIGGER_MAX_AGE)
    await process(database, str(order["shop_id"]), {str(user): [happening]}, now)


async def on_customers_followed(database: Database, shop_id: str, followers: Sequence[Sequence[Any]],
                                now: datetime) -> None:
    """Follows (new friends, or ones who unblocked us), [line_user_id, is_unblocked] each: one batch."""
    at = as_utc(now)
    await process(database, shop_id, {str(follower[0]): [Happening("follow", f"follow:{_ms(now)}", at)]
                                      for follower in followers}, at)


async def on_customer_followed(database: Database, shop_id: str, line_user_id: str, is_unblocked: bool | None,
                               now: datetime) -> None:
    """One follow (the intents of earlier versions)."""
    await on_customers_followed(database, shop_id, [[line_user_id, is_unblocked]], now)


async def on_browser_linked(database: Database, shop_id: str, browser_id: str, line_user_id: str,
                            now: datetime) -> None:
    """A link: the link trigger; and the customer's first visit may now be an earlier one — as may the
    previous owner's, when the browser moved — so their running runs get it (the filters read it there)."""
    at = as_utc(now)
    sequences = await shop_sequences(database, shop_id)
    if not sequences:
        return
    browser = await BrowserRepository(database).get(shop_id, browser_id)
    history = (browser or {}).get("link_history") or []
    previous = history[-1].get("previous_line_user_id") if history else None
    for user in ([line_user_id, previous] if previous and previous != line_user_id else [line_user_id]):
        await refresh_first_visit(database, shop_id, user)
    await process(database, shop_id, {line_user_id: [Happening("link", f"link:{browser_id}:{_ms(at)}", at)]}, at,
                  sequences)


async def refresh_first_visit(database: Database, shop_id: str, line_user_id: str) -> None:
    """Give the customer's running runs their current first visit (only when it changed)."""
    contacts = ContactRepository(database)
    contact = await contacts.get(shop_id, line_user_id)
    running = {key: state for key, state in ((contact or {}).get("flows") or {}).items()
               if key.startswith(STATE_PREFIX) and isinstance(state, dict) and state.get("status") == "running"}
    if not running:
        return
    visit = await first_visit(database, shop_id, line_user_id)
    for key, state in running.items():
        if state.get("first_visit") != visit:
            # Conditional on the due time read: a worker that advanced the run meanwhile is not undone.
            await contacts.put_flow_state(shop_id, line_user_id, key, {"first_visit": visit},
                                          due_at=state.get("due_at"), create=False,
                                          when={f"flows.{key}.run": state.get("run"),
                                                f"flows.{key}.due_at": state.get("due_at")})


async def on_tags_changed(database: Database, shop_id: str, line_user_ids: list[str], added: list[str],
                          removed: list[str], now: datetime) -> None:
    """Tags the admin API added (a tag_added trigger) or removed (so adding it again counts again)."""
    at = as_utc(now)
    happenings = [Happening("tag_added", f"tag+:{tag}:{_ms(at)}", at, tag=tag) for tag in added]
    happenings += [Happening("tag_removed", f"tag-:{tag}:{_ms(at)}", at, tag=tag) for tag in removed]
    if happenings:
        await process(database, shop_id, {user: happenings for user in line_user_ids}, at)


# --- deciding and writing ---

async def process(database: Database, shop_id: str, by_user: Mapping[str, Sequence[Happening]], now: datetime,
                  sequences: list[LoadedSequence] | None = None) -> None:
    if not by_user:
        return
    kinds = {h.kind for happenings in by_user.values() for h in happenings}
    if sequences is None:
        sequences = await shop_sequences(database, shop_id)
    sequences = [s for s in sequences if relevant(s, kinds)]
    if not sequences:
        return
    contacts = ContactRepository(database)
    read = await contacts.get_many([customer_key(shop_id, user) for user in by_user])
    held = False
    for user, happenings in by_user.items():
        contact = read.get(customer_key(shop_id, user))
        for _ in range(ATTEMPTS):
            outcome = await _apply(database, shop_id, user, contact, sequences, happenings, now)
            if outcome is not None:
                held = held or outcome
                break
            contact = await contacts.get(shop_id, user)
        else:
            log.warning("shop %s: a customer's sequence runs kept changing; the signal will run again", shop_id)
            held = True
    if held:
        raise RetryLater("a worker held a customer whose run reached its goal; the goal is recorded later")


async def _apply(database: Database, shop_id: str, user: str, contact: Document | None,
                 sequences: list[LoadedSequence], happenings: Sequence[Happening], now: datetime) -> bool | None:
    """Write one customer's actions. None: a run changed under us (read again); True: a goal must be
    recorded later (a worker holds the contact, its record of a send may still be coming)."""
    runs = {k: v for k, v in ((contact or {}).get("flows") or {}).items() if isinstance(v, dict)}
    actions = decide(sequences, runs, happenings, now)
    if not actions:
        return False
    contacts = ContactRepository(database)
    held = bool(contact and contact.get("claim"))
    later = False
    visit: dict[str, Any] | None = None
    if any(action.kind == "enter" for action in actions):  # the run carries it for the filters
        visit = await first_visit(database, shop_id, user)
    for action in actions:
        key = action.sequence.key
        if action.kind in ("enter", "goal", "set"):
            when = {f"flows.{key}.{name}": value for name, value in action.seen.items()}
            fields, due = action.fields, action.seen.get("due_at")  # a tag flag keeps the run's due time
            if action.kind == "enter":
                fields, due = {**fields, "first_visit": visit}, fields.get("due_at")
            elif action.kind == "goal":
                due = None
            changed = await contacts.put_flow_state(shop_id, user, key, fields, due_at=due, when=when,
                                                    create=action.kind == "enter")
            if not changed:
                return None
        if action.kind in ("enter", "entered_again"):
            await _record_entry(database, shop_id, user, action)
        elif action.kind in ("goal", "goal_again"):
            if held:
                later = True  # recorded by the replay, once the worker's records are in the contact's log
            else:
                await _record_goal(database, shop_id, user, action, contact)
    return later


async def _record_entry(database: Database, shop_id: str, user: str, action: Action) -> None:
    happening = action.happening
    assert happening is not None
    await SequenceRuns(database).entered(shop_id, action.sequence.sequence_id, user, action.run, {
        "gen": action.sequence.gen, "trigger": happening.kind, "trigger_event": happening.id,
        "entered_at": as_utc(happening.at)})


def goal_conversion(shop_id: str, user: str, action: Action, log_entries: Iterable[Mapping[str, Any]]) -> Document | None:
    """The goal as a conversion of the run's latest message (sent or held back); None before any message."""
    happening = action.happening
    assert happening is not None
    flow, run = action.sequence.flow, action.run
    mine = [e for e in log_entries if e.get("flow") == flow and e.get("cycle") == run and e.get("status") in ATTRIBUTED]
    if not mine:
        return None
    latest = max(mine, key=record_time)
    # A purchase goal shares the order's conversion ID with the attribution of that order: counted once.
    order_id = happening.order_id or f"goal-{run}"
    return {"_id": compose(shop_id, order_id, flow), "shop_id": shop_id, "flow": flow, "order_id": order_id,
            "line_user_id": user, "key": latest.get("key"), "step": latest.get("step"),
            "group": "holdout" if latest.get("status") == "held" else "treated", "delivery_at": record_time(latest),
            "revenue": happening.revenue, "ordered_at": as_utc(happening.at), "goal": True}


async def _record_goal(database: Database, shop_id: str, user: str, action: Action, contact: Document | None) -> None:
    happening = action.happening
    assert happening is not None
    conversion = goal_conversion(shop_id, user, action, (contact or {}).get("log") or [])
    await SequenceRuns(database).goal_reached(shop_id, action.sequence.sequence_id, user, action.run,
                                              as_utc(happening.at), happening.id, conversion is not None)
    if conversion is not None:
        await DeliveryLog(database).add_conversions([conversion])
