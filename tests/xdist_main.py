"""What a pytest-xdist worker's `__main__` names as its file (tests/conftest.py).

The worker's `__main__` has neither `__spec__` nor `__file__`: pyspark.sql.connect (imported by
Great Expectations) takes that for a doctest run and exits. A spawned process (multiprocessing,
as the GBDT compile and other workers use) runs this file as its `__mp_main__`: nothing here.
"""
