"""Steward: keep an application's data healthy every night (plain-Python core, no Prefect)."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Arrow's C++ default allocator is chosen once, when pyarrow loads, from this variable; on
# Linux it is otherwise mimalloc. pyarrow's set_memory_pool (steward.archive.arrow_memory)
# does not reach the Parquet writer's own buffers, which kept a 1 GiB mimalloc arena 40-95 MiB
# resident while whole partitions were exported (peak RSS 270-308 -> 237 MiB at 1M rows).
# An operator's own choice stays.
if _sys.platform == "linux":
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
