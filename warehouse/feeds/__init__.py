"""The feed store: the interface (base), its backends (sqlite, redis), the factory (open), the
publish batch (batch) and the read path (reader)."""
