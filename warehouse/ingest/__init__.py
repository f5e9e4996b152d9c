"""Adapters for real impression logs (MIND, EB-NeRD): read a log's files, check every line,
and map it into the raw tables of the warehouse, day by day (jobs/ingest_log.py runs them).

The simulator is one source of the raw tables; a log is another. What a log lacks (a follow
graph, actions other than clicks, dwell in MIND, the simulator's true probabilities) is left
empty by the rules in `warehouse.ingest.mapping`, and `warehouse.ingest.config.RECORDED` says
which ranker tasks a format can train.
"""
