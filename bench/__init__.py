"""Benchmarks: ``python -m bench.<name>`` prints measured figures and ratios to raw baselines."""
