"""The flows merchants see reports of, in one list: their report names, Japanese titles and steps.

The dashboard shows one section per entry and the admin API's generic report
route (`GET /reports/flows/{flow}`) answers for exactly these names, both
through `delivery.report.flow_report`. A flow that has not sent anything yet
simply reports zeros, so a flow that lands later appears here by its name
alone. The names must be the `flow` its records carry in `delivery_log`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from flows.reminders.plan import CAMPAIGN as REMINDERS
from storage.database import Database
from storage.shop_settings import ReminderSettings, ShopSettingsRepository

StepsOf = Callable[[Database, str], Awaitable[Sequence[int]]]


async def _reminder_steps(database: Database, shop_id: str) -> Sequence[int]:
    """The configured steps, listed even before anything was sent on them (as `/reports/reminders` does)."""
    settings = await ShopSettingsRepository(database).get(shop_id, ReminderSettings)
    return range(1, len(settings.steps) + 1)


async def _no_steps(database: Database, shop_id: str) -> Sequence[int]:
    return ()


@dataclass(frozen=True)
class ReportedFlow:
    name: str  # the flow's name in delivery records, retry keys and click links
    title: str  # what the merchant reads (Japanese)
    steps: StepsOf = _no_steps  # steps listed even when nothing happened on them


REPORTED_FLOWS: tuple[ReportedFlow, ...] = (
    ReportedFlow(REMINDERS, "閲覧商品リマインド", _reminder_steps),
    ReportedFlow("cart", "カゴ落ち"),
    ReportedFlow("sequences", "ステップ配信"),
    ReportedFlow("broadcasts", "一斉配信"),
    ReportedFlow("points_earned", "ポイント獲得のお知らせ"),
    ReportedFlow("points_monthly", "ポイント残高のお知らせ"),
    ReportedFlow("points_expiry", "ポイント失効のお知らせ"),
)


def reported_flow(name: str) -> ReportedFlow | None:
    return next((flow for flow in REPORTED_FLOWS if flow.name == name), None)
