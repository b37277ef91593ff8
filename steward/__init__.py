"""Steward: keep an application's data healthy every night (plain-Python core, no Prefect)."""

__version__ = "0.1.0"
