"""Customers: the LINE users of one shop, and the flags that decide whether we may message them.

Document (`customers`, `_id` = "<shop_id>:<line_user_id>"):
  shop_id, line_user_id, display_name, picture_url, language, status_message,
  friend (bool), blocked (bool), is_unblocked (bool | None, from the last follow),
  followed_at, unfollowed_at, opted_out (bool), opted_out_at,
  shop_customer_id (str | None), email (str | None), tags ([str]),
  linked (bool: at least one browser points here), browser_ids ([str]),
  totals: {purchase_count, total_spend, first_seen_at, last_purchase_at},
  points: {balance, ...} (owned by storage.points),
  (the browse-reminder state lives apart, in `reminder_state`: see storage.reminders),
  created_at, updated_at.

A customer may exist before they follow (an order or a link import names them);
`friend` is then False. Never push unless friend and not blocked and not opted out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateMany, UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError

from storage.bulk import only_duplicates
from storage.database import Database, Document, IndexSpec
from storage.keys import customer_key


def new_customer_fields(shop_id: str, line_user_id: str, now: datetime) -> dict[str, Any]:
    """Fields a customer document gets when it is first created (for `$setOnInsert`)."""
    return {
        "shop_id": shop_id,
        "line_user_id": line_user_id,
        "friend": False,
        "blocked": False,
        "opted_out": False,
        "tags": [],
        "linked": False,
        "browser_ids": [],
        "totals": {"purchase_count": 0, "total_spend": 0, "first_seen_at": now, "last_purchase_at": None},
        "created_at": now,
    }


# THE definition of a customer we may push marketing to (every flow's policy) and of a reachable
# customer (the linking report's count: messageable and linked): each condition, in the order a refusal
# is reported, with the stored value it needs and the reason named when it fails.
MESSAGEABLE: tuple[tuple[str, bool, str], ...] = (
    ("blocked", False, "blocked"),
    ("opted_out", False, "opted_out"),
    ("friend", True, "not_friend"),
)
REACHABLE: tuple[tuple[str, bool, str], ...] = (*MESSAGEABLE, ("linked", True, "not_linked"))


def unmessageable_reason(customer: Mapping[str, Any]) -> str | None:
    """Why no flow may push marketing messages to this customer, or None when any may."""
    for field_name, needed, reason in MESSAGEABLE:
        if bool(customer.get(field_name)) is not needed:
            return reason
    return None


def unreachable_reason(customer: Mapping[str, Any]) -> str | None:
    """Why we may not push to this customer, or None when they are reachable."""
    for field_name, needed, reason in REACHABLE:
        if bool(customer.get(field_name)) is not needed:
            return reason
    return None


def reachable_filter(shop_id: str) -> dict[str, object]:
    """`unreachable_reason(...) is None` as an indexed query (index `shop_linked_reachable`)."""
    return {"shop_id": shop_id, **{field_name: needed for field_name, needed, _ in REACHABLE}}


@dataclass(frozen=True)
class CustomerChange:
    """One upsert of a customer's fields, written later with others (`CustomerRepository.apply`).

    `applied` shows what the document will look like, so a batch of webhook
    events can read its own writes before they are flushed.
    """

    shop_id: str
    line_user_id: str
    fields: dict[str, Any]  # $set
    insert: dict[str, Any]  # $setOnInsert (never overlaps `fields`)

    def operation(self) -> UpdateOne:
        return UpdateOne({"_id": customer_key(self.shop_id, self.line_user_id)},
                         {"$set": self.fields, "$setOnInsert": self.insert}, upsert=True)

    def applied(self, doc: Document | None) -> Document:
        base = dict(doc) if doc is not None else {"_id": customer_key(self.shop_id, self.line_user_id), **self.insert}
        base.update(self.fields)
        return base


def merge(changes: Sequence[CustomerChange]) -> CustomerChange:
    """One change with the effect of several changes of one customer made in this order."""
    fields: dict[str, Any] = {}
    for change in changes:
        fields.update(change.fields)
    first = changes[0]
    return CustomerChange(first.shop_id, first.line_user_id, fields,
                          {k: v for k, v in first.insert.items() if k not in fields})


def _upsert(shop_id: str, line_user_id: str, fields: dict[str, Any], now: datetime) -> CustomerChange:
    insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k not in fields}
    return CustomerChange(shop_id, line_user_id, fields, insert)


def follow_change(shop_id: str, line_user_id: str, profile: dict[str, Any] | None, is_unblocked: bool | None,
                  now: datetime) -> CustomerChange:
    """A follow (new friend or unblock): friend again, not blocked; refresh the profile we got."""
    fields: dict[str, Any] = {
        "friend": True,
        "blocked": False,
        "is_unblocked": is_unblocked,
        "followed_at": now,
        "updated_at": now,
    }
    if profile:
        for ours, theirs in (
            ("display_name", "displayName"),
            ("picture_url", "pictureUrl"),
            ("language", "language"),
            ("status_message", "statusMessage"),
        ):
            if profile.get(theirs) is not None:
                fields[ours] = profile[theirs]
    return _upsert(shop_id, line_user_id, fields, now)


def unfollow_change(shop_id: str, line_user_id: str, now: datetime) -> CustomerChange:
    """The user blocked the account: never push to them until they follow again."""
    return _upsert(shop_id, line_user_id, {"friend": False, "blocked": True, "unfollowed_at": now, "updated_at": now},
                   now)


def opt_out_change(shop_id: str, line_user_id: str, opted_out: bool, now: datetime) -> CustomerChange:
    """配信停止 / 配信再開: marketing pushes stop or resume; replies to the customer still work."""
    return _upsert(shop_id, line_user_id,
                   {"opted_out": opted_out, "opted_out_at": now if opted_out else None, "updated_at": now}, now)


GET_MANY_CHUNK = 50  # `$in` grows superlinearly on the embedded database
WRITE_CHUNK = 4  # customers written per statement (see `apply_batch`): ~3.5 ms each under a dozen indexes


class CustomerRepository:
    def __init__(self, database: Database, write_concern: WriteConcern | None = None) -> None:
        """`write_concern`: only for callers that make the writes durable themselves (`storage.durability`)."""
        self._database = database
        self._customers = database["customers"]
        if write_concern is not None:
            self._customers = self._customers.with_options(write_concern=write_concern)

    async def get(self, shop_id: str, line_user_id: str) -> Document | None:
        return await self._customers.find_one({"_id": customer_key(shop_id, line_user_id)})

    async def get_many(self, shop_id: str, line_user_ids: Iterable[str]) -> dict[str, Document]:
        """The customers that exist among these LINE users, one indexed query per 50."""
        users = sorted(set(line_user_ids))
        found: dict[str, Document] = {}
        for start in range(0, len(users), GET_MANY_CHUNK):
            async for doc in self._customers.find(
                {"shop_id": shop_id, "line_user_id": {"$in": users[start:start + GET_MANY_CHUNK]}}
            ):
                found[doc["line_user_id"]] = doc
        return found

    async def apply(self, changes: Sequence[CustomerChange]) -> None:
        """Write changes in one ordered bulk write (a customer's later change wins)."""
        if changes:
            await self._customers.bulk_write([change.operation() for change in changes], ordered=True)

    async def apply_batch(self, changes: Sequence[CustomerChange], created: Mapping[str, Document]) -> None:
        """A batch's changes: customers new to the batch in one `insert_many` of their final documents
        (`created`, by LINE user), the others in one bulk write of their changes merged per customer. An
        insert that finds the customer created meanwhile (an order, a link) becomes the merged upsert.

        On the embedded database an insert costs half an upsert (customers carry a dozen indexes), and a
        statement is applied whole before any other client's write: they go `WRITE_CHUNK` per statement, so
        a large batch does not hold up the webhook's acknowledgements behind it.
        """
        by_user: dict[str, list[CustomerChange]] = {}
        for change in changes:
            by_user.setdefault(change.line_user_id, []).append(change)
        upserts = [merge(own) for user, own in by_user.items() if user not in created]
        docs = [created[user] for user in by_user if user in created]
        for start in range(0, len(docs), WRITE_CHUNK):
            chunk = docs[start:start + WRITE_CHUNK]
            try:
                await self._customers.insert_many(chunk, ordered=False)
            except BulkWriteError as exc:
                if not only_duplicates(exc):
                    raise
                errors = exc.details.get("writeErrors", [])
                upserts += [merge(by_user[chunk[int(error["index"])]["line_user_id"]]) for error in errors]
        operations = [change.operation() for change in upserts]
        for start in range(0, len(operations), WRITE_CHUNK):
            await self._customers.bulk_write(operations[start:start + WRITE_CHUNK], ordered=False)

    async def record_follow(
        self, shop_id: str, line_user_id: str, profile: dict[str, Any] | None, is_unblocked: bool | None, now: datetime
    ) -> Document:
        """A follow (new friend or unblock): friend again, not blocked; refresh the profile we got."""
        change = follow_change(shop_id, line_user_id, profile, is_unblocked, now)
        doc = await self._customers.find_one_and_update(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$set": change.fields, "$setOnInsert": change.insert},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return doc

    async def record_unfollow(self, shop_id: str, line_user_id: str, now: datetime) -> None:
        """The user blocked the account: never push to them until they follow again."""
        await self.apply([unfollow_change(shop_id, line_user_id, now)])

    async def set_opted_out(self, shop_id: str, line_user_id: str, opted_out: bool, now: datetime) -> None:
        """配信停止 / 配信再開: marketing pushes stop or resume; replies to the customer still work."""
        await self.apply([opt_out_change(shop_id, line_user_id, opted_out, now)])

    # --- admin API: listing, tags, rank, shop customer IDs (indexes declared below the class) ---

    async def list_page(
        self,
        shop_id: str,
        *,
        after: str | None = None,
        limit: int = 50,
        tag: str | None = None,
        rank: str | None = None,
        friend: bool | None = None,
        blocked: bool | None = None,
        opted_out: bool | None = None,
        linked: bool | None = None,
    ) -> list[Document]:
        """One page in LINE user ID order (keyset paging; each filter has an index ending in line_user_id)."""
        query: dict[str, Any] = {"shop_id": shop_id}
        for field, value in (("tags", tag), ("rank", rank), ("friend", friend), ("blocked", blocked),
                             ("opted_out", opted_out), ("linked", linked)):
            if value is not None:
                query[field] = value
        if after is not None:
            query["line_user_id"] = {"$gt": after}
        cursor = self._customers.find(query).sort("line_user_id", 1).limit(limit)
        return [doc async for doc in cursor]

    async def bulk_tags(
        self, shop_id: str, line_user_ids: list[str], add: list[str], remove: list[str], fields: dict[str, Any],
        now: datetime,
    ) -> None:
        """Add/remove tags (and set fields such as rank) for many customers; unknown customers are created.

        `tags_changed` is intended before the write (a crash leaves it for the worker's outbox drain).
        """
        intent = None
        if add or remove:
            intent = await self._database.signals.tags_changed.intend(
                self._database, shop_id, list(line_user_ids), list(add), list(remove), now, now=now)
        insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id="", now=now).items()
                  if k not in ("tags", "line_user_id", *fields)}
        ops: list[UpdateOne | UpdateMany] = []
        for line_user_id in line_user_ids:
            update: dict[str, Any] = {
                "$set": {**fields, "updated_at": now},
                "$setOnInsert": {**insert, "line_user_id": line_user_id},
            }
            if add:
                update["$addToSet"] = {"tags": {"$each": add}}
            else:
                update["$setOnInsert"]["tags"] = []
            ops.append(UpdateOne({"_id": customer_key(shop_id, line_user_id)}, update, upsert=True))
        if remove:
            keys = [customer_key(shop_id, u) for u in line_user_ids]
            ops.append(UpdateMany({"_id": {"$in": keys}}, {"$pull": {"tags": {"$in": remove}}}))
        await self._customers.bulk_write(ops, ordered=True)
        if intent is not None:
            await intent.deliver()

    async def update_fields(self, shop_id: str, line_user_id: str, fields: dict[str, Any], now: datetime) -> None:
        """Set merchant-owned fields (rank, e-mail, tags, shop customer ID), creating the customer if needed."""
        if "shop_customer_id" in fields and fields["shop_customer_id"] is not None:
            await self._release_shop_customer_id(shop_id, fields["shop_customer_id"], line_user_id)
        insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items() if k not in fields}
        intent = None
        if fields.get("tags") is not None:
            before = await self._customers.find_one({"_id": customer_key(shop_id, line_user_id)}, {"tags": 1})
            old, new = set((before or {}).get("tags") or []), set(fields["tags"])
            if old != new:
                intent = await self._database.signals.tags_changed.intend(
                    self._database, shop_id, [line_user_id], sorted(new - old), sorted(old - new), now, now=now)
        await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$set": {**fields, "updated_at": now}, "$setOnInsert": insert},
            upsert=True,
        )
        if intent is not None:
            await intent.deliver()

    async def reachability_changed(self, shop_id: str, since: datetime) -> dict[str, Document]:
        """Customers who blocked us or opted out at or after `since` (two indexed ranges): who of an audience
        frozen at `since` may have become unreachable. The current documents are returned (the caller
        checks what holds now: a customer may have come back)."""
        found: dict[str, Document] = {}
        projection = {"line_user_id": 1, "friend": 1, "blocked": 1, "opted_out": 1}
        for moment in ("unfollowed_at", "opted_out_at"):
            async for doc in self._customers.find({"shop_id": shop_id, moment: {"$gte": since}}, projection):
                found[str(doc["line_user_id"])] = doc
        return found

    async def map_shop_customer_ids(self, shop_id: str, pairs: list[tuple[str, str]], now: datetime) -> None:
        """Record shop customer ID -> LINE user; an ID moves away from whoever held it before."""
        for shop_customer_id, line_user_id in pairs:
            await self.update_fields(shop_id, line_user_id, {"shop_customer_id": shop_customer_id}, now)

    async def _release_shop_customer_id(self, shop_id: str, shop_customer_id: str, keep: str) -> None:
        await self._customers.update_many(
            {"shop_id": shop_id, "shop_customer_id": shop_customer_id, "line_user_id": {"$ne": keep}},
            {"$set": {"shop_customer_id": None}},
        )

    async def by_shop_customer_id(self, shop_id: str, shop_customer_id: str) -> Document | None:
        return await self._customers.find_one({"shop_id": shop_id, "shop_customer_id": shop_customer_id})

    # --- linking: which browsers point at the customer (linking.links keeps these in step) ---

    async def add_browser(self, shop_id: str, line_user_id: str, browser_id: str, now: datetime) -> None:
        """The browser now belongs to this customer (created if unknown, e.g. linked before following)."""
        insert = {k: v for k, v in new_customer_fields(shop_id, line_user_id, now).items()
                  if k not in ("linked", "browser_ids")}
        await self._customers.update_one(
            {"_id": customer_key(shop_id, line_user_id)},
            {"$set": {"linked": True, "updated_at": now}, "$addToSet": {"browser_ids": browser_id},
             "$setOnInsert": insert},
            upsert=True,
        )

    async def remove_browser(self, shop_id: str, line_user_id: str, browser_id: str, now: datetime) -> None:
        """The browser moved to someone else; the customer stays linked only while a browser remains."""
        key = customer_key(shop_id, line_user_id)
        await self._customers.update_one(
            {"_id": key}, {"$pull": {"browser_ids": browser_id}, "$set": {"updated_at": now}}
        )
        await self._customers.update_one({"_id": key, "browser_ids": {"$size": 0}}, {"$set": {"linked": False}})


INDEXES: list[IndexSpec] = (
    [
        IndexSpec("customers", [("shop_id", ASCENDING), ("line_user_id", ASCENDING)], "shop_user", unique=True),
        IndexSpec("customers", [("shop_id", 1), ("tags", 1), ("line_user_id", 1)], "shop_tag_user"),
        IndexSpec("customers", [("shop_id", 1), ("linked", 1), ("friend", 1), ("blocked", 1), ("opted_out", 1)],
                  "shop_linked_reachable"),
        IndexSpec("customers", [("shop_id", 1), ("rank", 1), ("line_user_id", 1)], "shop_rank_user"),
        IndexSpec("customers", [("shop_id", 1), ("friend", 1), ("line_user_id", 1)], "shop_friend_user"),
        IndexSpec("customers", [("shop_id", 1), ("linked", 1), ("line_user_id", 1)], "shop_linked_user"),
        IndexSpec("customers", [("shop_id", 1), ("opted_out", 1), ("line_user_id", 1)], "shop_opted_out_user"),
        IndexSpec("customers", [("shop_id", 1), ("blocked", 1), ("line_user_id", 1)], "shop_blocked_user"),
        # When a customer stopped being reachable: a broadcast checks its frozen audience against these.
        IndexSpec("customers", [("shop_id", 1), ("unfollowed_at", 1)], "shop_unfollowed"),
        IndexSpec("customers", [("shop_id", 1), ("opted_out_at", 1)], "shop_opted_out_at"),
        # Unique among customers that have one; the engine does not plan lookups on a partial
        # index, so a plain one (longer key pattern) serves the look-ups.
        IndexSpec(
            "customers", [("shop_id", 1), ("shop_customer_id", 1)], "shop_customer_id", unique=True,
            partial_filter={"shop_customer_id": {"$type": "string"}},
        ),
        IndexSpec("customers", [("shop_id", 1), ("shop_customer_id", 1), ("line_user_id", 1)], "shop_customer_lookup"),
    ]
)
