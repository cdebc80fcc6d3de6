"""The postback data format: what `build` makes parses back; anything else is refused."""

from __future__ import annotations

import pytest

from bot.postback import ACTIONS, Postback, PostbackError, build, parse


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_round_trip(action: str) -> None:
    data = build(action)  # type: ignore[arg-type]
    assert data == f"v=1&a={action}"
    assert parse(data) == Postback(action=action)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [
    None, "", 42, "v=1", "a=points", "v=2&a=points", "v=1&a=unknown", "v=1&a=points&a=history",
    "v=1&a=points&extra=1", "a=points&v=1", "v=1&a=points&", "v=1&&a=points", "v=%31&a=points",
    "garbage", "v=1&a=" + "x" * 400, "action=points",
])
def test_refused(data: object) -> None:
    with pytest.raises(PostbackError):
        parse(data)


def test_build_refuses_unknown_actions_and_params() -> None:
    with pytest.raises(ValueError):
        build("steal")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build("points", user="U1")
