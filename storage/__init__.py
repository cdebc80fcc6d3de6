"""Storage: MongoDB collections, their indexes, repositories, and the embedded server.

Every document carries `shop_id`; every query names it (tenant isolation).
Times are stored as UTC datetimes.

Collections
- `shops`: one per tenant: name, time zone, LINE credentials (write-only through
  the API), hashed admin API keys, settings documents.
- `customers`: a LINE user of one shop (`_id` = "<shop_id>:<line_user_id>"):
  profile, friend/blocked/opted-out flags, tags, totals, points balance, the
  reminder state (`next_due_at` …).
- `browsers`: a first-party browser ID of one shop and the customer it is linked to.
- `events`: browser events (page views, carts, purchases), unique by client event ID.
- `webhook_events`: every LINE webhook event as received, unique by `webhookEventId`,
  with its handling state (so a crash between ack and handling is recovered).
- `products`: the shop's catalogue with variants and summed stock.
- `orders`: orders by the shop's order ID.
- `points_ledger`: points transactions, unique by external transaction ID.
- `campaigns`, `deliveries`: what was (or will be) sent to whom, unique by delivery key.
- `link_tokens`: one-time linking tokens (LINE Login state, chat codes, account-link nonces), TTL-expired.

This package knows MongoDB; it never knows HTTP.
"""
