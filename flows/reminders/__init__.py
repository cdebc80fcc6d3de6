"""Browse-abandonment reminders (PRODUCT.md §3): state kept at ingest, a flow the delivery engine runs."""
