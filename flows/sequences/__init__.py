"""Step sequences (ステップ配信, PRODUCT.md §5): runs kept in the contacts at ingest, a flow the delivery engine runs."""
