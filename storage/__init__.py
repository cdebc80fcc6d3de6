"""Storage: MongoDB collections, their indexes, repositories, and the embedded server.

Every document carries `shop_id`; every query names it (tenant isolation).
Times are stored as UTC datetimes.

Collections
- `shops`: one per tenant: name, time zone, LINE credentials (write-only through
  the API), hashed admin API keys, settings documents.
- `customers`: a LINE user of one shop (`_id` = "<shop_id>:<line_user_id>"):
  profile, friend/blocked/opted-out flags, tags, totals, points balance.
- `reminder_state`, `reminder_profiles`: the browse-reminder engine's lean
  scheduling state (`next_due_at`, claims) and per-customer view/purchase
  aggregates kept at ingest (storage.reminders).
- `product_views`: per browser and product: view count, first/last view (linking).
- `browsers`: a first-party browser ID of one shop, the customer it is linked to, and
  its per-minute tracking budget (rate limit shared by all web processes).
- `events`: browser events (page views, carts, purchases), unique by client event ID.
- `webhook_batches`: every LINE webhook event as received, the events of requests arriving together
  in one document, unique by `webhookEventId`, with their handling state (so a crash between ack and
  handling is recovered; storage.webhook_events).
- `carts`: one per cart token of a shop (tracking events and the platform's `PUT /carts`): lines, stage,
  open/ordered/emptied, value, owner, last activity, abandonment moment (storage.carts).
- `products`: the shop's catalogue with variants and summed stock.
- `orders`: orders by the shop's order ID.
- `points_ledger`: points transactions, unique by external transaction ID (and the worker's
  expiries, "expiry/<earn's transaction ID>").
- `job_runs`: once-per-period worker runs (e.g. a shop's monthly points notice), leased (storage.job_runs).
- `deliveries`, `conversions`: what was sent (or skipped, or failed) to whom, unique
  by delivery key; clicks and attributed orders.
- `link_tokens`: one-time linking tokens (LINE Login state, chat codes, account-link nonces), TTL-expired.
- `shop_settings`: typed settings sections per shop (storage.shop_settings).
- `segments`, `segment_members`: saved customer filters (with their own rich menu's refresh state, a
  leased collection) and who may be linked to that menu (storage.segments).
- `broadcasts`, `broadcast_batches`: broadcasts to a segment and their frozen audience in batches of at
  most 500 LINE users, both leased collections (storage.broadcasts, storage.leases).
- `reminder_shop_state`: per-shop pauses of reminder sending (LINE monthly quota spent).
- `dashboard_sessions`: signed-in dashboard sessions (hashed tokens, CSRF token, expiry), TTL-expired.
- `deployment_keys`: per-deployment random keys made once and shared by every process (dashboard cookies).

This package knows MongoDB; it never knows HTTP.
"""
