"""linesim: a LINE Platform (Messaging API + webhooks) simulator for local runs
and tests. Never used in production."""

from .app import create_app
from .state import SimConfig

__all__ = ["SimConfig", "create_app"]
