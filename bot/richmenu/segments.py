"""A segment's own rich menu: rendered like the default one, linked to the segment's members in bulk.

The worker's `segment_menus` job refreshes each segment whose menu is due (`storage.segments`: a leased
collection; due when the segment changes, when asked, and every `REFRESH` after a refresh): it creates the
menu when its settings changed (render, create, upload; named `linecrm-seg:<shop>:<segment>:<version>`, so
the default menu's deploy never deletes it), evaluates the segment, links the members who joined (everyone
when the menu is new) with LINE's bulk link (≤ 500 per call), unlinks the ones who left — they see the
shop's default menu again — and deletes the replaced menu. A deleted segment, or one whose menu was
removed, has everyone unlinked and its menu deleted.

Who may be linked is stored before any link call (the union of who was and who is a member), so a worker
killed mid-refresh leaves no linked member unrecorded: the next refresh unlinks whoever left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from linebot.v3.messaging import ApiException

from bot.richmenu.deploy import create_with_image
from bot.richmenu.layout import rich_menu_object
from bot.richmenu.render import render
from core.line_client import LineApiError, LineClient
from delivery.context import JobContext, JobSummary
from delivery.pacing import RateLimiter
from storage.broadcasts import chunks
from storage.database import Document
from storage.leases import NEVER, Conditional, Lease, new_lease
from storage.segments import SegmentFilter, SegmentRepository, audience_query, members
from storage.shop_settings import RichMenuSettings
from storage.shops import Shop, ShopRepository

log = logging.getLogger("linecrm.richmenu")

REFRESH = timedelta(hours=1)  # members who left fall back to the default menu at the latest this much later
LEASE = timedelta(minutes=30)  # a refresh links a whole segment: give it time before another worker takes it
LINK_RATE = 10.0  # bulk link/unlink calls per second (LINE_FACTS gives no figure for them; 429s are retried)
NAME_PREFIX = "linecrm-seg"


def menu_name(shop_id: str, segment_id: str, version: str) -> str:
    return f"{NAME_PREFIX}:{shop_id}:{segment_id}:{version}"


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


async def refresh_menus(ctx: JobContext, now: datetime, shop_id: str | None) -> JobSummary:
    """Every segment whose menu is due: created, relinked or removed."""
    repo = SegmentRepository(ctx.database)
    summary: Counter[str] = Counter()
    async for refs in repo.menus.due_stream(now, shop_id, 10):
        lease = new_lease(now, LEASE)
        await repo.menus.claim(refs, lease, shop_id)
        for segment in await repo.menus.claimed(lease):
            try:
                await Refresh(ctx, repo, segment, lease, now, summary).run()
            except (LineApiError, ApiException, aiohttp.ClientError, TimeoutError) as exc:
                # Left leased: another run takes it over when the lease ends (every step is repeatable).
                summary["failed"] += 1
                log.warning("segment %s: rich menu refresh failed (%s); retried later", segment["_id"],
                            type(exc).__name__)
    return dict(summary)


class Refresh:
    """One segment's refresh (holding its lease)."""

    def __init__(self, ctx: JobContext, repo: SegmentRepository, segment: Document, lease: Lease, now: datetime,
                 summary: Counter[str]) -> None:
        self.ctx, self.repo, self.segment, self.lease, self.now, self.summary = ctx, repo, segment, lease, now, summary
        self.key = str(segment["_id"])
        self.state: dict[str, Any] = dict(segment.get("menu") or {})
        self.limiter = RateLimiter(LINK_RATE, burst=1)

    async def run(self) -> None:
        shop = await ShopRepository(self.ctx.database).get(str(self.segment["shop_id"]))
        if shop is None:
            await self.repo.remove(self.key)
            return
        line = self.ctx.line.for_token(shop.line.channel_access_token)
        linked = await self.repo.members_of(self.key, self.state.get("generation"))
        wanted = None if self.segment.get("deleted") else self.segment.get("rich_menu")
        if wanted is None:
            await self._remove(line, linked)
        else:
            await self._relink(shop, line, wanted, linked)

    async def _remove(self, line: LineClient, linked: list[str]) -> None:
        await self._bulk(line, None, linked)
        for menu_id in (self.state.get("rich_menu_id"), self.state.get("previous")):
            await self._delete_menu(line, menu_id)
        if self.state:
            self.summary["removed"] += 1
            self.summary["unlinked"] += len(linked)
        if self.segment.get("deleted"):
            await self.repo.remove(self.key)
            return
        generation = self.state.get("generation")
        await self._settle({"menu": None}, NEVER)
        if generation is not None:
            await self.repo.drop_generation(self.key, int(generation))

    async def _relink(self, shop: Shop, line: LineClient, wanted: dict[str, Any], linked: list[str]) -> None:
        digest = settings_digest(wanted)
        menu_id, previous = self.state.get("rich_menu_id"), self.state.get("previous")
        if menu_id is None or self.state.get("hash") != digest:
            previous = previous or menu_id
            menu_id = await self._create(shop, line, RichMenuSettings.model_validate(wanted))
            self.summary["menus_created"] += 1
            await self._record(rich_menu_id=menu_id, hash=digest, previous=previous)
        spec = SegmentFilter.model_validate(self.segment.get("filter") or {})
        now_members = await members(self.ctx.database, audience_query(str(self.segment["shop_id"]), spec, self.now))
        # Link everyone when the menu is new, or when the last refresh stopped half-way (`pending`: its
        # record holds who *may* be linked, not who is).
        relink_all = previous is not None or not linked or bool(self.state.get("pending"))
        # Who may be linked is recorded before any link call: everyone who was or is a member.
        generation = int(self.state.get("generation") or 0)
        await self.repo.store_members(self.key, generation + 1, sorted(set(linked) | set(now_members)))
        await self._record(generation=generation + 1, pending=True)
        await self.repo.drop_generation(self.key, generation)
        joined = now_members if relink_all else sorted(set(now_members) - set(linked))
        left = sorted(set(linked) - set(now_members))
        await self._bulk(line, menu_id, joined)
        await self._bulk(line, None, left)
        await self._delete_menu(line, previous)
        await self.repo.store_members(self.key, generation + 2, now_members)
        await self._record(generation=generation + 2, previous=None, pending=False, members=len(now_members),
                           deployed_at=self.now)
        await self.repo.drop_generation(self.key, generation + 1)
        await self._settle({}, self.now + REFRESH)
        self.summary["refreshed"] += 1
        self.summary["linked"] += len(joined)
        self.summary["unlinked"] += len(left)

    async def _create(self, shop: Shop, line: LineClient, settings: RichMenuSettings) -> str:
        segment_id = str(self.segment["segment_id"])
        version = self.now.strftime("%Y%m%dT%H%M%S")
        body = rich_menu_object(settings, shop.shop_id, version, name=menu_name(shop.shop_id, segment_id, version))
        app = self.ctx.settings
        menu_id = await create_with_image(line, data_api_base=app.line_data_api_base,
                                          access_token=shop.line.channel_access_token, body=body,
                                          image=render(settings), timeout=app.line_timeout_seconds)
        # Menus of this segment a crashed refresh created but never recorded are deleted now.
        listing = await line.api.get_rich_menu_list(_request_timeout=aiohttp.ClientTimeout(total=app.line_timeout_seconds))
        mine = menu_name(shop.shop_id, segment_id, "")
        keep = {menu_id, self.state.get("rich_menu_id"), self.state.get("previous")}
        for menu in listing.richmenus:
            if str(menu.name or "").startswith(mine) and menu.rich_menu_id not in keep:
                await self._delete_menu(line, menu.rich_menu_id)
        return menu_id

    async def _bulk(self, line: LineClient, menu_id: str | None, users: list[str]) -> None:
        for part in chunks(users):
            await self.limiter.acquire()
            if menu_id is None:
                await line.unlink_rich_menus(part)
            else:
                await line.link_rich_menu(menu_id, part)

    async def _delete_menu(self, line: LineClient, menu_id: str | None) -> None:
        if menu_id is None:
            return
        with contextlib.suppress(ApiException):  # already gone
            await line.api.delete_rich_menu(menu_id, _request_timeout=aiohttp.ClientTimeout(
                total=self.ctx.settings.line_timeout_seconds))

    async def _record(self, **fields: Any) -> None:
        """Progress of the menu state, written while the lease holds (a lost lease stops the refresh)."""
        self.state.update(fields)
        if not await self.repo.menus.write([Conditional(self.key, self.lease.token, {"$set": {"menu": self.state}})]):
            raise LeaseLost(self.key)

    async def _settle(self, fields: dict[str, Any], due: datetime) -> None:
        """Free the segment; due again at `due`, or now when it changed during the refresh (`v`)."""
        release = {**fields, "claim": None, "prev_claim": None}
        version = self.segment.get("v")  # None matches a segment never changed through the API
        applied = await self.repo.menus.write([Conditional(self.key, self.lease.token,
                                                           {"$set": {**release, "next_due_at": due}}, {"v": version})])
        if not applied:
            await self.repo.menus.write([Conditional(self.key, self.lease.token,
                                                     {"$set": {**release, "next_due_at": self.now}})])


class LeaseLost(LineApiError):
    """Another worker took the segment over (our lease ran out): stop, it finishes the refresh."""

    def __init__(self, key: str) -> None:
        super().__init__(None, f"lease on segment {key} lost", "richmenu refresh")
