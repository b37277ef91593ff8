"""A relay process for the multi-process outbox tests (plain core, no Prefect).

    python relay_worker.py drain [--limit N]          relay until nothing is due; print totals
    python relay_worker.py die-after-publish [--limit N]
                                                      claim and publish one batch, then exit
                                                      with code 3 before marking it
    python relay_worker.py forever                    long-running mode until SIGTERM

Settings come from the STEWARD_* environment the test exported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from steward.outbox import OutboxRelay, drain, run_forever
from steward.settings import get_settings

KILLED_EXIT_CODE = 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "die-after-publish", "forever"])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    relay = OutboxRelay.from_settings(get_settings())
    if args.mode == "die-after-publish":

        def die(events: object) -> None:
            sys.stdout.flush()
            os._exit(KILLED_EXIT_CODE)  # between publish and mark: the transaction is lost

        relay.relay_batch(limit=args.limit, after_publish=die)
        return 1  # not reached unless nothing was claimed
    if args.mode == "forever":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print("ready", file=sys.stderr, flush=True)
        totals = run_forever(relay, stop)
    else:
        totals = drain(lambda: relay.relay_batch(limit=args.limit))
    print(json.dumps(totals.as_dict()))
    relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
