"""Rankers, retrieval, value model, metrics and registry helpers."""
