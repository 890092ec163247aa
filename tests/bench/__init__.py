"""Benchmarks for issue 5 (`make bench`): figures beside baselines measured in the same run.

Not tests: nothing here asserts on time, and pytest collects none of it (no test_*.py files).
"""
