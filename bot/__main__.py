"""`python -m bot`: the web process (webhooks, tracking, links, admin API, dashboard)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from bot.app import create_app
from core.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=logging.getLogger("linecrm.access"),
        shutdown_timeout=10,
        print=lambda message: logging.getLogger("linecrm.web").info(message.strip()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
