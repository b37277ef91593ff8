"""Prefect deployments of Steward's flows: prefect.yaml (the source of truth) and serve.py."""
