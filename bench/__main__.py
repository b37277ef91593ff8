"""Run every benchmark in turn: ``python -m bench`` (``make bench``).

Each benchmark prints its own table of measured figures and the ratio to a raw baseline
measured in the same run. Arguments after ``--`` are not forwarded; run a single benchmark
(``python -m bench.archive --rows 5000000``) to change its scale.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.demo_data",
    "bench.archive",
    "bench.outbox",
    "bench.cache",
    "bench.backup",
    "bench.validate",
    "bench.health",
)


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module} ===", flush=True)
        if subprocess.call([sys.executable, "-m", module]) != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
