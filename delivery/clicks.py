"""Click links in the messages we send: signed tokens for `/r/{token}`, so clicks are counted per delivery.

A token names the shop, the flow, the step, the delivery (its retry key, which
does not reveal the LINE user ID) and the target: a product of the shop (`p:<id>`,
resolved to its current URL when clicked) or a URL we put in the message
ourselves (`u:<url>`, e.g. a cart's recovery URL). It is signed with a key
derived from the shop's channel secret, so nobody can make our redirect send a
customer elsewhere (no open redirect) and no per-message record is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

SEPARATOR = "\x1f"
SIGNATURE_BYTES = 12


@dataclass(frozen=True)
class Click:
    shop_id: str
    flow: str
    step: int | None
    key: str
    target: str  # "p:<product id>" or "u:<absolute http(s) URL>"

    @property
    def product_id(self) -> str | None:
        return self.target[2:] if self.target.startswith("p:") else None

    @property
    def url(self) -> str | None:
        return self.target[2:] if self.target.startswith("u:") else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def click_secret(channel_secret: str) -> bytes:
    """The shop's key for click tokens (derived, so the channel secret itself signs nothing of ours)."""
    return hmac.new(channel_secret.encode(), b"linecrm click links v1", hashlib.sha256).digest()


def _signature(secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, payload, "sha256")[:SIGNATURE_BYTES]


def click_token(secret: bytes, click: Click) -> str:
    payload = SEPARATOR.join([click.shop_id, click.flow, "" if click.step is None else str(click.step), click.key,
                              click.target]).encode()
    return f"{_b64(payload)}.{_b64(_signature(secret, payload))}"


def click_url(public_base: str, secret: bytes, click: Click) -> str:
    return f"{public_base.rstrip('/')}/r/{click_token(secret, click)}"


def shop_of(token: str) -> str | None:
    """The shop a token claims to be from (to find its secret); None when the token is malformed."""
    try:
        payload = _unb64(token.split(".", 1)[0]).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = payload.split(SEPARATOR)
    return parts[0] if len(parts) == 5 and parts[0] else None


def parse_click(token: str, secret: bytes) -> Click | None:
    """The click a token names, or None when it is malformed or not signed with this shop's key."""
    try:
        encoded, signature = token.split(".", 1)
        payload = _unb64(encoded)
        if not hmac.compare_digest(_unb64(signature), _signature(secret, payload)):
            return None
        shop_id, flow, step, key, target = payload.decode().split(SEPARATOR)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not target.startswith(("p:", "u:")) or (step and not step.isdigit()):
        return None
    return Click(shop_id, flow, int(step) if step else None, key, target)
