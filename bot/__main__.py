"""`python -m bot`: the web process (webhooks, tracking, links, admin API, dashboard)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp import web

from bot.access_log import RouteAccessLogger
from bot.app import create_app
from core.runtime import tune_garbage_collector
from core.settings import SettingsError, load_settings


def run_options() -> dict[str, Any]:
    """How the server logs and stops: routes (never queries) in the access log; a few seconds to stop."""
    return {
        "access_log": logging.getLogger("linecrm.access"),
        "access_log_class": RouteAccessLogger,
        "shutdown_timeout": 3,
        "print": lambda message: logging.getLogger("linecrm.web").info(message.strip()),
    }


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    tune_garbage_collector()  # young-generation passes less often, start-up objects frozen (core.runtime)
    web.run_app(app, host=settings.host, port=settings.port, **run_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
