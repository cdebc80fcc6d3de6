"""Cart and checkout abandonment reminders (カゴ落ち): carts at ingest, one journey per cart on the delivery engine."""
