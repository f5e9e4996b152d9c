"""The table catalog, Parquet partitions with atomic commits, data contracts and feed stores."""
