"""Rankers: the shared task vocabulary (base), each kind (gbdt, dnn, ensemble) and the loader that
knows them all (load)."""
