"""A new broadcast as stored: the segment's filter frozen into it, its key, due at `send_at` (the admin route
and the benchmark create broadcasts alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flows.broadcasts.runner import broadcast_delivery_key
from storage.broadcasts import broadcast_key
from storage.database import Document
from storage.segments import SegmentFilter


def broadcast_document(shop_id: str, broadcast_id: str, segment_id: str, spec: SegmentFilter,
                       messages: list[dict[str, Any]], send_at: datetime, now: datetime, targeted: int) -> Document:
    return {"_id": broadcast_key(shop_id, broadcast_id), "shop_id": shop_id, "broadcast_id": broadcast_id,
            "segment_id": segment_id, "filter": spec.stored(), "messages": messages, "send_at": send_at,
            "key": broadcast_delivery_key(shop_id, broadcast_id), "status": "scheduled", "targeted": targeted,
            "created_at": now, "counts": {}, "settled": [], "next_due_at": send_at, "claim": None,
            "prev_claim": None}
