"""Benchmark helpers: DeepPCB's metric and the reference detector that measures how well
a generated training set teaches a model (``benchmarks/transfer.py``)."""
