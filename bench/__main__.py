"""Run every benchmark in turn: ``python -m bench`` (``make bench``).

Each benchmark prints its own table of measured figures and the ratio to a raw baseline
measured in the same run. Arguments after ``--`` are not forwarded; run a single benchmark
(``python -m bench.archive --rows 5000000``) to change its scale.
"""

from __future__ import annotations

import argparse
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
    "bench.physical",
    "bench.nightly",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run every benchmark in turn at its default scale: "
        + ", ".join(BENCHMARKS)
        + ". Run one (`python -m bench.archive --help`) to change its scale.",
    )
    parser.parse_args(argv)
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
