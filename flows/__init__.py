"""Prefect flows, one per module; each takes one pydantic parameters model named ``params``."""
