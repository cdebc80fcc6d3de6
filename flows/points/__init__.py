"""Points notices (PRODUCT.md §8): earned points, the monthly balance and expiry reminders, and the expiry job."""
