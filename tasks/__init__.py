"""Reusable Prefect tasks, one module per concern; each task does one verb on one batch."""
