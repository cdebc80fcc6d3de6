"""Segments (PRODUCT.md §6): the tags the server keeps by itself; audiences are `storage.segments`."""
