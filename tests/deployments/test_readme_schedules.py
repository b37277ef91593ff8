"""The README's flow table ("What is in the box") names every deployment of
deployments/prefect.yaml, with the schedule the file gives it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from steward.catalog import FLOWS

REPO = Path(__file__).resolve().parents[2]
# The README's words for a schedule -> the crons of deployments/prefect.yaml.
WORDS = {
    "daily 01:00 UTC": ["0 1 * * *"],
    "hourly": ["0 * * * *"],
    "every 5 minutes": ["*/5 * * * *"],
}


def _readme_schedules() -> dict[str, str]:
    table = (REPO / "README.md").read_text().split("## What is in the box", 1)[1].split("\n\n")[1]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    return {re.sub(r"`", "", row[1]).strip(): row[3].strip() for row in rows}


def _crons(words: str) -> list[str]:
    for start, crons in WORDS.items():
        if words.startswith(start):
            return crons
    assert words.startswith(("on demand", "in `nightly`")), f"unknown schedule words {words!r}"
    return []


def test_readme_flow_table_matches_the_deployments() -> None:
    readme = _readme_schedules()
    document = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    deployed = {
        d["name"]: [s["cron"] for s in d.get("schedules") or []] for d in document["deployments"]
    }
    assert set(readme) == set(deployed) == set(FLOWS)
    for name, words in readme.items():
        assert _crons(words) == deployed[name], f"{name}: README says {words!r}"
