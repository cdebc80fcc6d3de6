"""Japanese words for the codes the reports and records carry (an unknown code is shown as it is)."""

from __future__ import annotations

REASONS = {
    "blocked": "ブロック中",
    "not_friend": "友だちではない",
    "opted_out": "配信停止中",
    "not_linked": "ブラウザ未連携",
    "recent_purchase": "最近購入済み",
    "purchased": "購入済み",
    "no_products": "表示できる商品なし",
    "frequency_cap": "配信回数の上限",
    "quiet_hours": "夜間の配信停止時間",
    "window": "配信時間外",
    "send_window": "配信時間外",
    "disabled": "配信オフ",
    "paused": "一時停止中",
    "superseded": "後のステップに統合",
    "stale": "期限切れ",
    "filtered": "条件に合わない",
    "unknown_customer": "顧客情報なし",
    "unknown_shop": "ショップ情報なし",
    "reminders_off": "リマインドがオフ",
    "holdout": "ホールドアウト",
    "unknown": "不明",
}

STATUSES = {
    "sent": "送信済み",
    "skipped": "スキップ",
    "failed": "失敗",
    "held": "ホールドアウト",
    "deferred": "延期",
    "send": "送信",
    "wait": "待機",
    "postpone": "延期",
    "hold": "ホールドアウト",
    "skip": "スキップ",
    "end": "終了",
    "active": "進行中",
    "stopped": "終了（購入）",
    "inactive": "対象外",
    "disabled": "オフ",
    "complete": "完了",
    "stop": "終了（購入）",
    "scheduled": "予約済み",
    "sending": "送信中",
    "done": "完了",
    "cancelled": "取り消し",
}


def reason(code: object) -> str:
    return REASONS.get(str(code), str(code))


def status(code: object) -> str:
    return STATUSES.get(str(code), str(code))
