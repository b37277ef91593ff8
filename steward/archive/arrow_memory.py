"""Arrow's allocator while archiving: jemalloc, which returns freed batch buffers.

Every batch allocates and frees tens of MiB of Arrow buffers (CSV parse, Parquet encode and
decode). pyarrow's default pool on Linux wheels is mimalloc, which keeps freed pages for reuse
by the thread that freed them; with reads, encodes and deletes on several threads that retained
memory adds up. Measured with ``python -m bench.archive --rows 200000 --shapes orders`` (same
machine, one after another): peak RSS 368 MiB with mimalloc, 286 MiB with jemalloc at the same
speed (0.96x and 0.95x of the baseline), 286 MiB with the system allocator but slower (0.74x).
An ``ARROW_DEFAULT_MEMORY_POOL`` set by the operator is left alone.
"""

from __future__ import annotations

import os
import threading

import pyarrow as pa

__all__ = ["use_archive_memory_pool"]

_LOCK = threading.Lock()


def use_archive_memory_pool() -> str:
    """Make jemalloc Arrow's default pool (process-wide, once) where this pyarrow build has it
    and the operator chose no pool; returns the pool in use."""
    with _LOCK:
        current = pa.default_memory_pool()
        if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or current.backend_name == "jemalloc":
            return str(current.backend_name)
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:  # a build without jemalloc keeps its default
            return str(current.backend_name)
        pa.set_memory_pool(pool)
        return str(pool.backend_name)
