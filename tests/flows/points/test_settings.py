"""`PUT /settings/points`: the fixed fields of INTERFACES.md ("Points notices") and the notices' look; a bad value
gets a 4xx naming the field and changes nothing."""

from __future__ import annotations

import pytest

from tests.flows.points.conftest import World

SAVED = {"earned_notice": False, "monthly_notice": True, "monthly_day": 28, "monthly_hour": 23,
         "expiry_reminder": True, "expiry_lead_days": 90, "color": "#AA3377", "button_text": "ポイントを使う"}


@pytest.mark.parametrize(("bad", "field"), [
    ({"monthly_day": 29}, "monthly_day"),  # every month has a 28th
    ({"monthly_day": 0}, "monthly_day"),
    ({"monthly_hour": 24}, "monthly_hour"),
    ({"expiry_lead_days": 0}, "expiry_lead_days"),
    ({"expiry_lead_days": 91}, "expiry_lead_days"),
    ({"earned_notice": "yes"}, "earned_notice"),
    ({"color": "red"}, "color"),
    ({"button_text": ""}, "button_text"),
    ({"button_text": "あ" * 41}, "button_text"),
    ({"quiet_hours": {"enabled": True, "start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
    ({"extra": 1}, "extra"),
])
async def test_bad_points_settings_are_refused_and_change_nothing(world: World, bad: dict[str, object],
                                                                  field: str) -> None:
    saved = await world.admin("PUT", "/settings/points", SAVED)
    refused = await world.admin("PUT", "/settings/points", {**SAVED, **bad}, status=422)
    assert refused["error"]["field"] == field and refused["error"]["code"]
    assert await world.admin("GET", "/settings/points") == saved
