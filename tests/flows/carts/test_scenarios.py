"""Cart reminders end to end: the real app, database and linesim, with an injected clock."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.conftest import START
from tests.flex_helpers import flex_texts as texts
from tests.flows.carts.conftest import CartWorld, hours, messages, user

U1, U2, U3 = user(1), user(2), user(3)
CART_TEXT = "お買い忘れはありませんか?カートの商品はこちらからご購入いただけます。"
CHECKOUT_TEXT = "ご購入手続きの途中です。カートの商品はこちらからお手続きを再開できます。"


async def test_add_to_cart_then_one_reminder_then_an_order_with_the_token_is_recovered(world: CartWorld) -> None:
    await world.settings()
    await world.product("low", stock=2)
    await world.product("gone", stock=0)
    browser = await world.customer(U1)
    await world.add(START, browser, "tok-1", "low", quantity=2, value=25600, variant_id="v1")
    await world.add(START + hours(0.5), browser, "tok-1", "gone")
    await world.add(START + hours(1), browser, "tok-1", "ghost", value=3000)  # not in the catalogue

    assert (await world.run(START + hours(3.9))).get("sent", 0) == 0  # 3 hours after the *last* activity
    summary = await world.run(START + hours(4))
    assert summary["cart:sent"] == 1
    (push,) = await world.pushes(U1)
    text, cards = messages(push)
    assert text == CART_TEXT
    assert [texts(card)[1:] for card in cards] == [
        ["残りわずか!", "商品 low", "Mサイズ", "数量: 2", "¥12,800"],
        ["在庫切れ", "商品 gone", "数量: 1", "¥12,800"],
        ["商品 ghost", "数量: 1", "¥3,000"],
    ]
    assert all(texts(card)[0] == "カートに商品が残っています" for card in cards)
    assert "hero" not in cards[2]  # an unknown product: no image, still shown
    assert (await world.run(START + hours(5))).get("sent", 0) == 0
    assert len(await world.pushes(U1)) == 1

    # Every button opens the recovery URL through our redirect (counted, then forwarded with UTM parameters).
    url = cards[0]["footer"]["contents"][0]["action"]["uri"]
    assert {card["footer"]["contents"][0]["action"]["uri"] for card in cards} == {url}
    response = await world.client.get(urlsplit(url).path, allow_redirects=False)
    assert response.status == 302
    target = urlsplit(response.headers["Location"])
    assert (target.netloc, target.path) == ("shop.example", "/cart/recover")
    query = parse_qs(target.query)
    assert query["token"] == ["tok-1"] and query["utm_campaign"] == ["cart"] and query["utm_source"] == ["line"]

    await world.order(U1, "o-1", 41600, START + hours(6), cart_token="tok-1")
    assert (await world.cart("tok-1"))["state"] == "ordered"
    report = await world.report(**{"from": "2037-12-01", "to": "2037-12-31"})
    assert {k: report[k] for k in ("abandoned", "reminded", "skipped", "clicks", "recovered", "recovery_rate",
                                   "recovered_revenue")} == {
        "abandoned": 1, "reminded": 1, "skipped": {}, "clicks": 1, "recovered": 1, "recovery_rate": 1.0,
        "recovered_revenue": 41600}
    assert report["holdout"] is None and report["lift"] is None


async def test_an_emptied_cart_gets_nothing(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    item = {"product_id": "p1", "quantity": 1, "price": 12800}
    await world.put_cart(START, "plat-1", [item], expect=201, line_user_id=U1, stage="cart")
    assert (await world.journey(U1))["status"] == "waiting"
    await world.put_cart(START + hours(1), "plat-1", [], expect=200, line_user_id=U1)
    assert (await world.cart("plat-1"))["state"] == "emptied"
    assert (await world.journey(U1))["status"] == "ended"
    for later in (3, 4, 30):
        assert (await world.run(START + hours(later))).get("sent", 0) == 0
    assert await world.pushes() == []
    assert (await world.report())["abandoned"] == 0


async def test_a_purchase_before_the_delay_gets_nothing(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    b1, b2, b3 = await world.customer(U1), await world.customer(U2), await world.customer(U3)
    for browser in (b1, b2, b3):
        await world.add(START, browser, f"tok-{browser}", "p1")
    await world.purchase(START + hours(1), b1, f"tok-{b1}")  # the tracking script's purchase with the token
    await world.order(U2, "o-2", 12800, START + hours(2), cart_token=f"tok-{b2}")  # the shop's order with it
    await world.order(U3, "o-3", 5000, START + hours(2))  # an order by the customer, no token
    assert (await world.run(START + hours(3))).get("sent", 0) == 0
    assert (await world.run(START + hours(30))).get("sent", 0) == 0
    assert await world.pushes() == []
    assert [(await world.cart(f"tok-{b}"))["state"] for b in (b1, b2, b3)] == ["ordered", "ordered", "open"]
    assert [(await world.journey(u))["reason"] for u in (U1, U2, U3)] == ["ordered", "ordered", "purchased"]


async def test_an_order_that_arrives_before_its_cart_keeps_the_cart_ended(world: CartWorld) -> None:
    await world.settings()
    await world.customer(U1)
    await world.order(None, "guest-1", 12800, START, cart_token="early")  # a guest order: the cart's owner unknown
    status, cart = await world.put_cart(START + hours(1), "early", [{"product_id": "p1", "quantity": 1,
                                                                     "price": 12800}], line_user_id=U1)
    assert status == 200 and cart["state"] == "ordered" and cart["items"] == []
    assert (await world.run(START + hours(5))).get("contacts", 0) == 0 and await world.pushes() == []


async def test_a_guest_order_with_the_token_finds_the_carts_customer_and_recovers(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    browser = await world.customer(U1)
    await world.add(START, browser, "g", "p1")
    assert (await world.run(START + hours(3)))["sent"] == 1
    await world.order(None, "guest-2", 12800, START + hours(30), cart_token="g")  # no customer identity at all
    order = await world.client.get(f"{world.base}/orders/guest-2", headers=world.shop.auth)
    assert (await order.json())["line_user_id"] == U1
    report = await world.report()
    assert (report["recovered"], report["recovered_revenue"]) == (1, 12800)


async def test_quiet_hours_defer_the_reminder_to_the_morning(world: CartWorld) -> None:
    await world.settings(quiet_hours={"enabled": True, "start": "21:00", "end": "09:00"})
    await world.product("p1")
    browser = await world.customer(U1)
    await world.add(START + hours(9), browser, "late", "p1")  # 19:00 in Tokyo; due 22:00, inside quiet hours
    summary = await world.run(START + hours(12))
    assert summary.get("sent", 0) == 0 and summary["cart:deferred:quiet_hours"] == 1
    morning = START + hours(23)  # 09:00 the next day in Tokyo
    (deferred,) = await world.records(status="deferred")
    assert deferred["reason"] == "quiet_hours" and deferred["until"] == morning
    assert (await world.run(morning - hours(0.1))).get("sent", 0) == 0
    assert (await world.run(morning))["sent"] == 1
    report = await world.report()
    assert report["reminded"] == 1 and report["deferred"] == {"quiet_hours": 1}


async def test_one_reminder_per_cart_and_a_three_day_cooldown(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    await world.product("p2")
    browser = await world.customer(U1)
    await world.add(START, browser, "A", "p1")
    assert (await world.run(START + hours(3)))["sent"] == 1
    # More activity on the reminded cart: never a second reminder for it.
    await world.add(START + hours(5), browser, "A", "p2")
    assert (await world.run(START + hours(9))).get("sent", 0) == 0
    # Another cart within three days of the reminder: skipped for the cooldown.
    await world.add(START + hours(24), browser, "B", "p1")
    assert (await world.run(START + hours(27)))["skipped:cooldown"] == 1
    # A cart abandoned after the cooldown is reminded.
    await world.add(START + hours(24 * 3 + 1), browser, "C", "p2")
    assert (await world.run(START + hours(24 * 3 + 4)))["sent"] == 1
    pushes = await world.pushes(U1)
    assert len(pushes) == 2
    assert [r["cycle"] for r in await world.records(status="sent")] == ["A", "C"]
    assert (await world.report())["skipped"] == {"cooldown": 1}


async def test_checkout_stage_picks_the_checkout_text(world: CartWorld) -> None:
    await world.settings(checkout_title="お手続きが途中です")
    await world.product("p1")
    b1, b2, b3 = await world.customer(U1), await world.customer(U2), await world.customer(U3)
    await world.add(START, b1, "cart-stage", "p1")
    await world.add(START, b2, "checkout-stage", "p1")
    await world.checkout(START + hours(0.5), b2, "checkout-stage")
    await world.put_cart(START, "platform-checkout", [{"product_id": "p1", "quantity": 1, "price": 9800}],
                         expect=201, browser_id=b3, stage="checkout")
    assert (await world.run(START + hours(4)))["sent"] == 3
    by_user = {p["to"]: messages(p) for p in await world.pushes()}
    assert by_user[U1][0] == CART_TEXT and texts(by_user[U1][1][0])[0] == "カートに商品が残っています"
    for checkout_user in (U2, U3):
        text, cards = by_user[checkout_user]
        assert text == CHECKOUT_TEXT and texts(cards[0])[0] == "お手続きが途中です"
    assert "¥9,800" in texts(by_user[U3][1][0])
    alt = {p["to"]: p["messages"][1]["altText"] for p in await world.pushes()}
    assert alt == {U1: "カートに商品が残っています", U2: "ご購入手続きが完了していません",
                   U3: "ご購入手続きが完了していません"}


async def test_a_cart_from_a_browser_linked_later_is_reminded_to_its_customer(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    await world.add(START, "anon-browser", "t-anon", "p1", quantity=3)
    assert (await world.cart("t-anon"))["line_user_id"] is None
    assert (await world.run(START + hours(3))).get("contacts", 0) == 0  # nobody to remind yet
    await world.customer(U1, browser="anon-browser")  # follows and links that browser an hour later
    assert (await world.cart("t-anon"))["line_user_id"] == U1
    assert (await world.run(START + hours(3.5)))["sent"] == 1  # due 3 hours after the last cart activity
    (push,) = await world.pushes(U1)
    assert "数量: 3" in texts(messages(push)[1][0])


async def test_a_platform_cart_finds_its_customer_by_the_shops_customer_id(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    await world.customer(U1)
    response = await world.client.post(f"{world.base}/customers/mappings",
                                       json={"mappings": [{"shop_customer_id": "member-7", "line_user_id": U1}]},
                                       headers=world.shop.auth)
    assert response.status == 200
    _, cart = await world.put_cart(START, "m7", [{"product_id": "p1", "quantity": 1, "price": 12800}], expect=201,
                                   customer_id="member-7")
    assert cart["line_user_id"] == U1 and cart["value"] == 12800
    assert (await world.run(START + hours(3)))["sent"] == 1


async def test_more_than_five_lines_show_five_cards_and_say_how_many_more(world: CartWorld) -> None:
    await world.settings()
    await world.customer(U1)
    items = [{"product_id": f"x{i}", "quantity": i + 1, "price": 1000 * (i + 1), "title": f"名前{i}"}
             for i in range(7)]
    _, cart = await world.put_cart(START, "big", items, expect=201, line_user_id=U1)
    assert cart["value"] == sum(1000 * (i + 1) * (i + 1) for i in range(7))
    await world.run(START + hours(3))
    (push,) = await world.pushes(U1)
    text, cards = messages(push)
    assert len(cards) == 5 and text.endswith("ほか2点の商品がカートに入っています。")
    assert texts(cards[4])[1:] == ["名前4", "数量: 5", "¥5,000"]


async def test_switched_off_no_reminders_and_a_waiting_journey_ends(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    browser = await world.customer(U1)
    await world.add(START, browser, "t1", "p1")
    await world.settings(enabled=False)
    summary = await world.run(START + hours(3))
    assert summary.get("sent", 0) == 0 and summary["cart:ended:disabled"] == 1
    await world.add(START + hours(4), browser, "t2", "p1")  # while off: no journey at all
    assert (await world.journey(U1))["token"] == "t1"
    assert (await world.run(START + hours(8))).get("contacts", 0) == 0
    assert await world.pushes() == []


async def test_an_order_after_a_click_recovers_without_the_token_but_not_without_a_click(world: CartWorld) -> None:
    await world.settings()
    await world.product("p1")
    b1, b2 = await world.customer(U1), await world.customer(U2)
    await world.add(START, b1, "c1", "p1")
    await world.add(START, b2, "c2", "p1")
    assert (await world.run(START + hours(3)))["sent"] == 2
    (push,) = await world.pushes(U1)
    url = messages(push)[1][0]["footer"]["contents"][0]["action"]["uri"]
    world.clock.set(START + hours(4))
    assert (await world.client.get(urlsplit(url).path, allow_redirects=False)).status == 302
    await world.order(U1, "o-1", 7000, START + hours(5))  # clicked, then ordered: recovered
    await world.order(U2, "o-2", 9000, START + hours(5))  # never clicked: not the reminder's doing
    report = await world.report()
    assert (report["reminded"], report["clicks"], report["recovered"], report["recovered_revenue"]) == (2, 1, 1, 7000)
    assert report["recovery_rate"] == 0.5


async def test_holdout_figures_and_lift(world: CartWorld) -> None:
    await world.settings()
    await world.put_settings("delivery", {"holdout_percent": 50})
    await world.product("p1")
    users = [user(100 + i) for i in range(24)]
    for i, line_user_id in enumerate(users):
        browser = await world.customer(line_user_id)
        await world.add(START, browser, f"h{i}", "p1")
    summary = await world.run(START + hours(3))
    held = summary.get("held:holdout", 0)
    assert summary["sent"] + held == len(users) and 0 < held < len(users)
    held_users = {r["user"] for r in await world.records(status="held")}
    # Half of each group orders with its cart token.
    for i, line_user_id in enumerate(users):
        if i % 2 == 0:
            await world.order(line_user_id, f"o{i}", 1000, START + hours(5), cart_token=f"h{i}")
    report = await world.report()
    assert report["held"] == held and report["reminded"] == len(users) - held
    assert report["holdout"]["customers"] == held
    assert report["holdout"]["conversions"] == sum(1 for i, u in enumerate(users) if i % 2 == 0 and u in held_users)
    assert report["treated"]["conversions"] == report["recovered"]
    lift = report["lift"]
    assert lift is not None and lift["low"] <= lift["difference"] <= lift["high"]
    assert len(await world.pushes()) == len(users) - held  # held out: recorded, never sent


async def test_the_frequency_cap_across_flows_defers_a_cart_reminder_or_drops_it_when_stale(
        world: CartWorld) -> None:
    await world.settings(quiet_hours={"enabled": False})
    await world.put_settings("delivery", {"frequency_cap": {"per_day": 1}})
    await world.product("p1")
    b1, b2 = await world.customer(U1), await world.customer(U2)
    await world.add(START, b1, "A", "p1")
    await world.add(START, b2, "B", "p1")
    for line_user_id in (U1, U2):  # a browse reminder went out an hour after the carts were left
        await world.db["contacts"].update_one({"line_user_id": line_user_id},
                                              {"$push": {"sent": {"at": START + hours(1), "flow": "reminders"}}})
    summary = await world.run(START + hours(3))
    assert summary["cart:deferred:frequency_cap"] == 2
    await world.put_settings("delivery", {"frequency_cap": {"per_day": 1, "per_week": 1}})
    await world.db["contacts"].update_one({"line_user_id": U2}, {"$set": {"flows.cart.due_at": START + hours(3),
                                                                                "next_due_at": START + hours(3)}})
    summary = await world.run(START + hours(3))  # U2 now waits a week: more than 2 days after due, dropped
    assert summary["cart:skipped:frequency_cap"] == 1
    await world.put_settings("delivery", {"frequency_cap": {"per_day": 1}})
    assert (await world.run(START + hours(25)))["sent"] == 1  # U1, once the day has passed
    assert [p["to"] for p in await world.pushes()] == [U1]
    assert (await world.report())["skipped"] == {"frequency_cap": 1}
