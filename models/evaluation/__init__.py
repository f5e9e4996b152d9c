"""Evaluation: metrics, the rankers' evaluation and reports, plots, the gap to the oracle and the
A/B test."""
