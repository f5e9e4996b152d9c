"""MLflow: runs, the registry's versions and aliases, the promotion gate, tags and the steps'
hand-offs."""
