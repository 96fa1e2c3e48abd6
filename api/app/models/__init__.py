"""Models on the shared volume: weights pushed by admins, chosen per upload."""
