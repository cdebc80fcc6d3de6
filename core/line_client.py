"""The one way out to LINE: a thin wrapper over line-bot-sdk v3's async client.

It knows what the SDK does not: retry keys (409 = already accepted, so "sent"),
back-off on 429 and 5xx with the same retry key, the monthly quota 429 (stop,
never loop), and that a 4xx is our bug (log the body, do not retry). Replies are
never retried after a timeout: a reply token is single-use and a lost answer
may mean it was used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import aiohttp
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    Message,
    MulticastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
)

log = logging.getLogger("linecrm.line")

RETRY_KEY_NAMESPACE = uuid.UUID("6f2c1d0e-4b7a-5c3e-9a41-2f6d8b0c7e15")
MONTHLY_LIMIT_MESSAGE = "You have reached your monthly limit."
PUSH_PATH = "/v2/bot/message/push"

T = TypeVar("T")
MessageLike: TypeAlias = Message | dict[str, Any]


def retry_key_for(*parts: object) -> str:
    """A UUID that is the same every time the same thing is sent (shop, customer, campaign, step, cycle…)."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, "\x1f".join(str(part) for part in parts)))


class LineApiError(Exception):
    """LINE refused a request for good (a 4xx other than 409/429, or retries ran out)."""

    def __init__(self, status: int | None, body: str, operation: str) -> None:
        super().__init__(f"LINE {operation} failed with {status}: {body[:500]}")
        self.status = status
        self.body = body
        self.operation = operation


class QuotaExhausted(LineApiError):
    """The channel's monthly message quota is spent: stop pushing for this shop."""


class InvalidReplyToken(LineApiError):
    """The reply token was stale or used: the caller may fall back to push."""


@dataclass(frozen=True)
class SendResult:
    """What LINE said about one send request."""

    request_id: str | None
    already_accepted: bool = False
    sent_message_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Quota:
    """This month's message quota of a channel: LINE's limit (None = no limit) and what was used."""

    limit: int | None
    used: int


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(self.max_delay, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(self.max_delay, self.base_delay * float(2**attempt))


def _as_message(message: MessageLike) -> Message:
    return message if isinstance(message, Message) else Message.from_dict(message)


def _sent_ids(raw: Any) -> list[str]:
    """`sentMessages[].id` of a push answer, read without the SDK's response models."""
    try:
        data = json.loads(raw) if raw else {}
        return [str(m["id"]) for m in data.get("sentMessages") or [] if isinstance(m, dict) and "id" in m]
    except (ValueError, TypeError, AttributeError):
        return []


def _body_text(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return str(body or "")


def _body_message(exc: ApiException) -> str:
    try:
        return str(json.loads(_body_text(exc)).get("message", ""))
    except (ValueError, AttributeError):
        return ""


class LineClient:
    """LINE Messaging API calls for one channel access token."""

    def __init__(
        self,
        api_client: AsyncApiClient,
        *,
        timeout: float,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api_client = api_client
        self.api = AsyncMessagingApi(api_client)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry
        self._sleep = sleep

    async def close(self) -> None:
        await self._api_client.close()

    async def push(self, to: str, messages: Sequence[MessageLike], *, retry_key: str) -> SendResult:
        """Push with a retry key: safe to call again for the same key (409 means already sent)."""
        request = PushMessageRequest(to=to, messages=[_as_message(m) for m in messages])
        return await self._send(
            "push",
            lambda: self.api.push_message_with_http_info(
                request, x_line_retry_key=retry_key, _request_timeout=self._timeout
            ),
            idempotent=True,
        )

    async def push_json(self, to: str, messages: Sequence[dict[str, Any]], *, retry_key: str) -> SendResult:
        """`push` for messages that are already valid LINE JSON (built and limit-checked by our builders).

        Skips the SDK's model layer (`Message.from_dict`, its pydantic v1
        serialisation and `sanitize_for_serialization`, milliseconds per
        carousel) but goes out through the same `AsyncApiClient`: its
        configuration, Bearer auth, default headers and pooled HTTP session,
        with `X-Line-Retry-Key`, and through `_call` for the same
        retry/409/429/quota handling as `push`. Do not mutate `messages` meanwhile.
        """
        api_client = self._api_client
        url = api_client.configuration.host + PUSH_PATH
        body = {"to": to, "messages": list(messages)}

        async def call() -> Any:
            headers = {**api_client.default_headers, "X-Line-Retry-Key": retry_key,
                       "Accept": "application/json", "Content-Type": "application/json"}
            api_client.update_params_for_auth(headers, [], ["Bearer"], PUSH_PATH, "POST", body)
            return await api_client.request("POST", url, headers=headers, body=body,
                                            _request_timeout=self._timeout)

        try:
            response = await self._call("push", call, idempotent=True)
        except _AlreadyAccepted as accepted:
            return SendResult(request_id=accepted.request_id, already_accepted=True)
        return SendResult(request_id=response.getheader("x-line-request-id"), sent_message_ids=_sent_ids(response.data))

    async def multicast(self, to: Sequence[str], messages: Sequence[MessageLike], *, retry_key: str) -> SendResult:
        request = MulticastRequest(to=list(to), messages=[_as_message(m) for m in messages])
        return await self._send(
            "multicast",
            lambda: self.api.multicast_with_http_info(
                request, x_line_retry_key=retry_key, _request_timeout=self._timeout
            ),
            idempotent=True,
        )

    async def reply(self, reply_token: str, messages: Sequence[MessageLike]) -> SendResult:
        """Reply once. Raises InvalidReplyToken when the token is stale/used (then push instead)."""
        request = ReplyMessageRequest(replyToken=reply_token, messages=[_as_message(m) for m in messages])
        return await self._send(
            "reply",
            lambda: self.api.reply_message_with_http_info(request, _request_timeout=self._timeout),
            idempotent=False,
        )

    async def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's LINE profile, or None when LINE does not know them (blocked, left)."""
        try:
            result = await self._call(
                "profile", lambda: self.api.get_profile(user_id, _request_timeout=self._timeout), idempotent=True
            )
        except LineApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result.to_dict())

    async def quota(self) -> Quota:
        """The monthly limit and this month's use (`GET /v2/bot/message/quota[/consumption]`).

        Asked once each (no back-off loop): a person is waiting on the page
        that shows it, and a stale answer is better shown as "unknown".
        """
        limit, used = await asyncio.gather(
            self._call("quota", lambda: self.api.get_message_quota(_request_timeout=self._timeout),
                       idempotent=True, attempts=1),
            self._call("quota_consumption",
                       lambda: self.api.get_message_quota_consumption(_request_timeout=self._timeout),
                       idempotent=True, attempts=1),
        )
        return Quota(limit=limit.value if limit.type == "limited" else None, used=int(used.total_usage))

    async def _send(self, operation: str, call: Callable[[], Awaitable[Any]], *, idempotent: bool) -> SendResult:
        try:
            response = await self._call(operation, call, idempotent=idempotent)
        except _AlreadyAccepted as accepted:
            return SendResult(request_id=accepted.request_id, already_accepted=True)
        headers = response.headers or {}
        sent = getattr(response.data, "sent_messages", None) or []
        return SendResult(
            request_id=headers.get("x-line-request-id"),
            sent_message_ids=[m.id for m in sent],
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]], *, idempotent: bool,
                    attempts: int | None = None) -> T:
        attempts = attempts or self._retry.attempts
        attempt = 0
        while True:
            try:
                return await call()
            except ApiException as exc:
                status = exc.status
                body = _body_text(exc)
                if status == 409 and idempotent:
                    headers = exc.headers or {}
                    raise _AlreadyAccepted(headers.get("x-line-accepted-request-id")) from None
                if status == 429 and _body_message(exc) == MONTHLY_LIMIT_MESSAGE:
                    log.error("LINE %s: monthly message quota exhausted", operation)
                    raise QuotaExhausted(status, body, operation) from None
                if status == 400 and operation == "reply" and "reply token" in _body_message(exc).lower():
                    raise InvalidReplyToken(status, body, operation) from None
                retryable = status == 429 or (status is not None and status >= 500 and idempotent)
                if not retryable or attempt + 1 >= attempts:
                    log.warning("LINE %s failed: status=%s body=%s", operation, status, body[:1000])
                    raise LineApiError(status, body, operation) from None
                retry_after = (exc.headers or {}).get("Retry-After")
                delay = self._retry.delay(attempt, retry_after)
                log.info("LINE %s answered %s; retrying in %.2fs", operation, status, delay)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if not idempotent or attempt + 1 >= attempts:
                    log.warning("LINE %s failed without an answer: %r", operation, exc)
                    raise LineApiError(None, repr(exc), operation) from None
                delay = self._retry.delay(attempt)
                log.info("LINE %s got no answer (%r); retrying in %.2fs", operation, exc, delay)
            attempt += 1
            await self._sleep(delay)


class _AlreadyAccepted(Exception):
    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id


class LineClients:
    """One LineClient per channel access token, created lazily in the running loop and reused."""

    def __init__(self, api_base: str, *, timeout: float, retry: RetryPolicy | None = None) -> None:
        self._api_base = api_base
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._clients: dict[str, LineClient] = {}

    def for_token(self, access_token: str) -> LineClient:
        key = hashlib.sha256(access_token.encode()).hexdigest()
        client = self._clients.get(key)
        if client is None:
            configuration = Configuration(host=self._api_base, access_token=access_token)
            client = LineClient(AsyncApiClient(configuration), timeout=self._timeout, retry=self._retry)
            self._clients[key] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
