"""`python -m tests.delivery.two_flows_worker --now ISO`: a worker composed with browse reminders and the
test-only `pings` flow, run once at a moment (as `python -m scheduler run-once` runs the real flows)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime

from core.settings import load_settings
from delivery.engine import Engine
from flows.reminders.plan import RemindersFlow
from scheduler.__main__ import job_context
from tests.delivery.ping_flow import PingFlow


async def main(now: datetime) -> None:
    settings = load_settings()
    async with job_context(settings) as ctx:
        summary = await Engine([RemindersFlow(settings.public_base), PingFlow()]).run(ctx, now)
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--now", type=datetime.fromisoformat, required=True)
    asyncio.run(main(parser.parse_args().now))
