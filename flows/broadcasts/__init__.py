"""Segment broadcasts (PRODUCT.md §6): frozen audiences multicast in batches, on the shared leases and policy."""
