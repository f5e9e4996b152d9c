"""Retrieval: the two-tower model, its data and evaluation, the FAISS index and the neighbour
search."""
