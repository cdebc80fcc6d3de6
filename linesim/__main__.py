"""`python -m linesim --port N [--host 127.0.0.1]`."""

from __future__ import annotations

import argparse

from aiohttp import web

from .app import create_app
from .state import SimConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="linesim", description="LINE Platform simulator")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--monthly-quota", type=int, default=None)
    args = parser.parse_args(argv)
    web.run_app(create_app(SimConfig(monthly_quota=args.monthly_quota)),
                host=args.host, port=args.port)


if __name__ == "__main__":
    main()
