"""Async helper for tests: wraps the `/_sim/*` control routes of a running linesim."""

from __future__ import annotations

from typing import Any, Self

import aiohttp


class SimError(Exception):
    """A `/_sim` call answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"linesim answered {status}: {body}")
        self.status, self.body = status, body


class SimClient:
    """`async with SimClient("http://127.0.0.1:8090") as sim: await sim.messages()`.

    Pass `session` to reuse one (e.g. pytest-aiohttp's TestClient.session);
    otherwise the client owns its session and `close()` closes it.
    """

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owned = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, json: Any = None,
                    params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(method, self.base_url + path, json=json,
                                         params=params) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise SimError(resp.status, body)
            return body

    async def messages(self, to: str | None = None, kind: str | None = None,
                       channel: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("to", to), ("kind", kind), ("channel", channel)) if v}
        messages: list[dict[str, Any]] = await self._call("GET", "/_sim/messages", params=params)
        return messages

    async def webhook(self, url: str, channel_secret: str, event: dict[str, Any] | None = None,
                      events: list[dict[str, Any]] | None = None,
                      redeliver: list[str] | None = None,
                      destination: str | None = None) -> dict[str, Any]:
        """Send events (short specs like `{"type": "text", "user_id": ..., "text": ...}`
        or full events) signed to `url`; answers {"status", "body", "events"}."""
        body: dict[str, Any] = {"url": url, "channel_secret": channel_secret}
        for key, value in (("event", event), ("events", events), ("redeliver", redeliver),
                           ("destination", destination)):
            if value is not None:
                body[key] = value
        answer: dict[str, Any] = await self._call("POST", "/_sim/webhook", json=body)
        return answer

    async def faults(self, endpoint: str, status: int | None = None, latency_ms: int | None = None,
                     drop: bool = False, count: int = 1) -> None:
        body: dict[str, Any] = {"endpoint": endpoint, "count": count, "drop": drop}
        if status is not None:
            body["status"] = status
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        await self._call("POST", "/_sim/faults", json=body)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_sim/faults")

    async def reset(self) -> None:
        await self._call("POST", "/_sim/reset")

    async def config(self, **changes: Any) -> dict[str, Any]:
        """`config()` reads; `config(rate_limits={"push": 2}, monthly_quota=10)` changes."""
        config: dict[str, Any] = await (self._call("GET", "/_sim/config") if not changes
                                        else self._call("PUT", "/_sim/config", json=changes))
        return config

    async def add_user(self, user_id: str, display_name: str | None = None,
                       picture_url: str | None = None, language: str | None = None,
                       **extra: Any) -> dict[str, Any]:
        body = {"user_id": user_id, **extra}
        for key, value in (("display_name", display_name), ("picture_url", picture_url),
                           ("language", language)):
            if value is not None:
                body[key] = value
        user: dict[str, Any] = await self._call("POST", "/_sim/users", json=body)
        return user

    async def reply_token(self, user_id: str) -> str:
        return str((await self._call("POST", "/_sim/reply_tokens", json={"user_id": user_id}))["replyToken"])
