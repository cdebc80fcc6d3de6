"""Rich menu flow: create, upload image (size rules read from the image
header), set/get/cancel default, list, get, delete."""

from __future__ import annotations

import io
from typing import Any

from .linesim_helpers import AUTH, jpeg, png, rich_menu


async def create(sim: Any, body: dict[str, Any] | None = None) -> str:
    resp = await sim.post("/v2/bot/richmenu", json=body or rich_menu(), headers=AUTH)
    assert resp.status == 200, await resp.text()
    menu_id: str = (await resp.json())["richMenuId"]
    return menu_id


async def upload(sim: Any, menu_id: str, data: bytes, ctype: str = "image/png") -> Any:
    return await sim.post(f"/v2/bot/richmenu/{menu_id}/content", data=io.BytesIO(data),
                          headers={**AUTH, "Content-Type": ctype})


async def test_rich_menu_default_flow(sim: Any) -> None:
    menu_id = await create(sim)
    # default needs an uploaded image
    assert (await sim.post(f"/v2/bot/user/all/richmenu/{menu_id}", headers=AUTH)).status == 400
    assert (await upload(sim, menu_id, png(2500, 843))).status == 200
    # the image cannot be replaced
    assert (await upload(sim, menu_id, png(2500, 843))).status == 400
    assert (await sim.post(f"/v2/bot/user/all/richmenu/{menu_id}", headers=AUTH)).status == 200
    got = await (await sim.get("/v2/bot/user/all/richmenu", headers=AUTH)).json()
    assert got == {"richMenuId": menu_id}
    listed = await (await sim.get("/v2/bot/richmenu/list", headers=AUTH)).json()
    assert [m["richMenuId"] for m in listed["richmenus"]] == [menu_id]
    assert listed["richmenus"][0]["chatBarText"] == "Menu"
    assert (await sim.get(f"/v2/bot/richmenu/{menu_id}", headers=AUTH)).status == 200
    # menus are per channel
    other = {"Authorization": "Bearer other-channel"}
    assert (await sim.get(f"/v2/bot/richmenu/{menu_id}", headers=other)).status == 404
    assert (await sim.get("/v2/bot/user/all/richmenu", headers=other)).status == 404
    assert (await sim.delete("/v2/bot/user/all/richmenu", headers=AUTH)).status == 200
    assert (await sim.get("/v2/bot/user/all/richmenu", headers=AUTH)).status == 404
    assert (await sim.delete(f"/v2/bot/richmenu/{menu_id}", headers=AUTH)).status == 200
    assert (await sim.get(f"/v2/bot/richmenu/{menu_id}", headers=AUTH)).status == 404


async def test_rich_menu_image_rules(sim: Any) -> None:
    menu_id = await create(sim)
    too_small = await upload(sim, menu_id, png(600, 200))
    assert too_small.status == 400 and "width" in (await too_small.json())["message"]
    mismatch = await upload(sim, menu_id, png(2500, 1686))
    assert mismatch.status == 400
    assert (await upload(sim, menu_id, b"GIF89a....", "image/gif")).status == 415
    assert (await upload(sim, menu_id, b"\x89PNG" + b"\0" * (1024 * 1024), "image/png")).status == 413
    assert (await upload(sim, menu_id, jpeg(2500, 843), "image/jpeg")).status == 200
    assert (await upload(sim, "richmenu-" + "0" * 32, png(2500, 843))).status == 404


async def test_rich_menu_object_rules(sim: Any) -> None:
    body = rich_menu()
    body["chatBarText"] = "a very long chat bar text"
    body["areas"][1]["bounds"]["x"] = 2000
    resp = await sim.post("/v2/bot/richmenu", json=body, headers=AUTH)
    assert resp.status == 400
    props = {d["property"] for d in (await resp.json())["details"]}
    assert props == {"chatBarText"}
    body["chatBarText"] = "Menu"
    resp = await sim.post("/v2/bot/richmenu", json=body, headers=AUTH)
    assert resp.status == 400
    assert {d["property"] for d in (await resp.json())["details"]} == {"areas[1].bounds"}
    resp = await sim.post("/v2/bot/richmenu", json=rich_menu(2500, 2000), headers=AUTH)
    assert resp.status == 400  # width/height < 1.45


async def test_rich_menus_linked_per_user_in_bulk_and_back_to_the_default(sim: Any) -> None:
    from .linesim_helpers import USER, USER2

    default, own = await create(sim), await create(sim)
    for menu_id in (default, own):
        assert (await upload(sim, menu_id, png(2500, 843))).status == 200
    assert (await sim.post(f"/v2/bot/user/all/richmenu/{default}", headers=AUTH)).status == 200
    link = await sim.post("/v2/bot/richmenu/bulk/link", json={"richMenuId": own, "userIds": [USER, USER2]},
                          headers=AUTH)
    assert link.status == 202
    for user in (USER, USER2):
        got = await sim.get(f"/v2/bot/user/{user}/richmenu", headers=AUTH)
        assert (await got.json()) == {"richMenuId": own}
    unlink = await sim.post("/v2/bot/richmenu/bulk/unlink", json={"userIds": [USER]}, headers=AUTH)
    assert unlink.status == 202
    assert (await sim.get(f"/v2/bot/user/{USER}/richmenu", headers=AUTH)).status == 404  # sees the default
    assert (await sim.delete(f"/v2/bot/user/{USER2}/richmenu", headers=AUTH)).status == 200
    assert (await sim.post(f"/v2/bot/user/{USER}/richmenu/{own}", headers=AUTH)).status == 200
    assert (await sim.delete(f"/v2/bot/richmenu/{own}", headers=AUTH)).status == 200  # unlinks its users
    assert (await sim.get(f"/v2/bot/user/{USER}/richmenu", headers=AUTH)).status == 404


async def test_bulk_links_are_checked_against_lines_schema_and_limits(sim: Any) -> None:
    from .linesim_helpers import USER

    menu_id = await create(sim)
    no_image = await sim.post("/v2/bot/richmenu/bulk/link", json={"richMenuId": menu_id, "userIds": [USER]},
                              headers=AUTH)
    assert no_image.status == 400
    assert (await upload(sim, menu_id, png(2500, 843))).status == 200
    for body in ({"richMenuId": menu_id, "userIds": []},
                 {"richMenuId": menu_id, "userIds": [USER] * 501},
                 {"richMenuId": menu_id, "userIds": ["not-a-user"]},
                 {"userIds": [USER]}):
        response = await sim.post("/v2/bot/richmenu/bulk/link", json=body, headers=AUTH)
        assert response.status == 400, body
    unknown = await sim.post("/v2/bot/richmenu/bulk/link", json={"richMenuId": "richmenu-" + "0" * 32,
                                                                  "userIds": [USER]}, headers=AUTH)
    assert unknown.status == 404
    assert (await sim.post("/v2/bot/richmenu/bulk/unlink", json={"userIds": []}, headers=AUTH)).status == 400
    assert (await sim.get("/v2/bot/user/nobody/richmenu", headers=AUTH)).status == 400
