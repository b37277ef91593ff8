"""The example application's data, made up: what ``steward demo`` and the tests fill in.

- ``generator``: :func:`generate_demo_data` writes the SQL tables (bulk, deterministic seed).
- ``rows``: builds the rows table by table; ``history``: timelines, soft deletes, outbox events.
- ``documents``: the MongoDB collections (:func:`generate_demo_documents`).
- ``vocabulary``: names, brands, countries and prices the rows are drawn from.
"""

from steward.demo.documents import DOCUMENT_COLLECTIONS, generate_demo_documents
from steward.demo.generator import COLUMNS, DEMO_TABLES, generate_demo_data
from steward.demo.history import STREAMS
from steward.demo.rows import DemoRows

__all__ = [
    "COLUMNS",
    "DEMO_TABLES",
    "DOCUMENT_COLLECTIONS",
    "STREAMS",
    "DemoRows",
    "generate_demo_data",
    "generate_demo_documents",
]
