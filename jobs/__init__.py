"""Batch jobs: one module per step; `run(settings, ds)` for DAG tasks, `main(argv)` for
spark-submit."""
