"""linesim's LINE Login: consent page, token, verify, friendship status (so linking runs offline)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import jwt

from tests.linking.conftest import line_user_id, sim_call

CHANNEL, SECRET = "1660000000", "0123456789abcdef0123456789abcdef"
REDIRECT = "https://bot.example/l/shp_x/callback"


def authorize_query(**extra: str) -> str:
    return urlencode({"response_type": "code", "client_id": CHANNEL, "redirect_uri": REDIRECT, "state": "st-1",
                      "scope": "openid profile", "nonce": "no-1", "bot_prompt": "aggressive", **extra})


async def test_login_round_trip(linesim_url: str) -> None:
    await sim_call(linesim_url, "POST", "/_sim/login_channels", {"channel_id": CHANNEL, "channel_secret": SECRET})
    user = line_user_id()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{linesim_url}/oauth2/v2.1/authorize?{authorize_query()}") as page:
            assert page.status == 200 and "ログイン" in await page.text()
        url = f"{linesim_url}/oauth2/v2.1/authorize?{authorize_query(user_id=user)}"
        async with session.get(url, allow_redirects=False) as redirect:
            location = urlsplit(redirect.headers["Location"])
        query = parse_qs(location.query)
        assert location.path == "/l/shp_x/callback" and query["state"] == ["st-1"]
        assert query["friendship_status_changed"] == ["true"]
        form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
                "client_id": CHANNEL, "client_secret": "wrong"}
        async with session.post(f"{linesim_url}/oauth2/v2.1/token", data=form) as refused:
            assert refused.status == 400 and (await refused.json())["error"] == "invalid_client"
        async with session.post(f"{linesim_url}/oauth2/v2.1/token", data={**form, "client_secret": SECRET}) as ok:
            tokens: dict[str, Any] = await ok.json()
        claims = jwt.decode(tokens["id_token"], SECRET, algorithms=["HS256"], audience=CHANNEL,
                            options={"verify_exp": False})
        assert claims["sub"] == user and claims["nonce"] == "no-1" and claims["iss"] == "https://access.line.me"
        verify = {"id_token": tokens["id_token"], "client_id": CHANNEL, "nonce": "no-1"}
        async with session.post(f"{linesim_url}/oauth2/v2.1/verify", data=verify) as checked:
            assert checked.status == 200 and (await checked.json())["sub"] == user
        async with session.post(f"{linesim_url}/oauth2/v2.1/verify", data={**verify, "nonce": "other"}) as bad:
            assert bad.status == 400
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with session.get(f"{linesim_url}/friendship/v1/status", headers=headers) as friendship:
            assert (await friendship.json()) == {"friendFlag": True}


async def test_unknown_client_is_refused(linesim_url: str) -> None:
    url = f"{linesim_url}/oauth2/v2.1/authorize?{authorize_query(client_id='999')}"
    async with aiohttp.ClientSession() as session, session.get(url) as page:
        assert page.status == 400
