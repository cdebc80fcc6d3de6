"""The one delivery engine every flow runs on, its policy layer and its reporting."""
