"""Browse-abandonment reminders (PRODUCT.md §3): state kept at ingest, a scheduled job that sends.

Importing this package registers the signal listeners (`state`) and the
"reminders" job (`engine`); `bot.app` and `scheduler.__main__` import it so
both processes react to the same events.
"""

from scheduler.reminders import engine, state  # noqa: F401 - registers the job and the listeners
