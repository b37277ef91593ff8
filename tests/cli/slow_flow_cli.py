"""``steward`` with one extra catalogued flow that runs until interrupted (for SIGINT tests).

Run as a script: ``python tests/cli/slow_flow_cli.py run slow-flow``. The flow prints its run id
and then ``started``, then works in one-second tasks until stopped.
"""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.runtime import flow_run

from steward.catalog import FLOWS, FlowEntry
from steward.cli.main import main


@task
def work_a_second(step: int) -> int:
    time.sleep(1)
    return step


@task
def hang(seconds: int) -> int:
    time.sleep(seconds)  # a driver call that does not return soon
    return seconds


@flow(name="slow-flow")
def slow_flow(seconds: int = 600, stuck: bool = False) -> dict[str, int]:
    """Work for ``seconds`` seconds, one task per second (or in one task, in a worker thread).

    Args:
        seconds: How long to work.
        stuck: Run one long task in the task runner's thread instead.
    """
    print(f"flow run id: {flow_run.id}", flush=True)
    print("started", flush=True)
    if stuck:
        hang.submit(seconds).result()
    for step in range(seconds):
        work_a_second(step)
    return {"seconds": seconds}


if __name__ == "__main__":
    FLOWS["slow-flow"] = FlowEntry("slow-flow", "__main__:slow_flow", "sleeps (tests)", None)
    main()
