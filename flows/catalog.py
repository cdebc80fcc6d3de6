"""The flows merchants see reports of, in one list: their report names, Japanese titles and steps.

The dashboard shows one section per entry and the admin API's generic report
route (`GET /reports/flows/{flow}`) answers for exactly these names, both
through `delivery.report.flow_report`. A flow that has not sent anything yet
simply reports zeros, so a flow that lands later appears here by its name
alone. The names must be the `flow` its records carry in `delivery_log`.
A family (step sequences) records each member under its own name, `prefix` +
the member's ID: it is shown as one section per member that has records (and
as itself, with zeros, while none has).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from flows.carts.journey import FLOW as CART
from flows.points.plan import EARNED, EXPIRY, MONTHLY, STEP
from flows.reminders.plan import CAMPAIGN as REMINDERS
from storage.database import Database
from storage.delivery_log import DeliveryLog
from storage.shop_settings import ReminderSettings, ShopSettingsRepository

StepsOf = Callable[[Database, str], Awaitable[Sequence[int]]]


async def _reminder_steps(database: Database, shop_id: str) -> Sequence[int]:
    """The configured steps, listed even before anything was sent on them (as `/reports/reminders` does)."""
    settings = await ShopSettingsRepository(database).get(shop_id, ReminderSettings)
    return range(1, len(settings.steps) + 1)


async def _no_steps(database: Database, shop_id: str) -> Sequence[int]:
    return ()


async def _one_step(database: Database, shop_id: str) -> Sequence[int]:
    return (STEP,)  # a cart gets one reminder; each points notice is one step


@dataclass(frozen=True)
class ReportedFlow:
    name: str  # the flow's name in delivery records, retry keys and click links
    title: str  # what the merchant reads (Japanese)
    steps: StepsOf = _no_steps  # steps listed even when nothing happened on them
    prefix: str | None = None  # a family: each member records under prefix + its ID (e.g. "seq:<id>")

    def member(self, name: str) -> ReportedFlow:
        assert self.prefix is not None
        return replace(self, name=name, title=f"{self.title}（{name[len(self.prefix):]}）", prefix=None)


REPORTED_FLOWS: tuple[ReportedFlow, ...] = (
    ReportedFlow(REMINDERS, "閲覧商品リマインド", _reminder_steps),
    ReportedFlow(CART, "カゴ落ち", _one_step),
    ReportedFlow("sequences", "ステップ配信", prefix="seq:"),
    ReportedFlow("broadcasts", "一斉配信"),
    ReportedFlow(EARNED, "ポイント獲得のお知らせ", _one_step),
    ReportedFlow(MONTHLY, "ポイント残高のお知らせ", _one_step),
    ReportedFlow(EXPIRY, "ポイント失効のお知らせ", _one_step),
)


MAX_NAME = 300


def reported_flow(name: str) -> ReportedFlow | None:
    """The listed flow of this report name, or the family member it names; None for any other name."""
    for flow in REPORTED_FLOWS:
        if flow.name == name:
            return flow
        if flow.prefix and name.startswith(flow.prefix) and len(flow.prefix) < len(name) <= MAX_NAME:
            return flow.member(name)
    return None


async def reported_flows(database: Database, shop_id: str) -> list[ReportedFlow]:
    """The shop's report sections in order: each listed flow, a family as its members that have records."""
    sections: list[ReportedFlow] = []
    for flow in REPORTED_FLOWS:
        if flow.prefix is None:
            sections.append(flow)
            continue
        names = await DeliveryLog(database).flow_names(shop_id, flow.prefix)
        sections += [flow.member(name) for name in names] or [flow]
    return sections
