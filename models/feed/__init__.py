"""Feed building: the precompute's settings, scoring candidates, the re-ranker and the offline feed
quality."""
