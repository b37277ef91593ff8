"""What a validation run found: per expectation, per suite, and the run's summary and report.

Plain data (JSON-friendly dataclasses) so Prefect tasks can return it and the CLI, the flow's
artifacts and the nightly report read the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ExpectationOutcome",
    "ScrubOutcome",
    "SuiteOutcome",
    "render_markdown",
    "summarize",
    "table_rows",
]


@dataclass
class ExpectationOutcome:
    """One expectation's result: counts and a sample of failing keys or rows."""

    name: str
    type: str
    severity: str
    success: bool
    unexpected_count: int | None = None
    element_count: int | None = None
    sample: list[Any] = field(default_factory=list)
    error: str | None = None
    description: str | None = None


@dataclass
class SuiteOutcome:
    """One suite's run (or why it was skipped)."""

    suite: str
    datasource: str
    target: str
    expectations: list[ExpectationOutcome] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0
    gx_result: dict[str, Any] | None = None
    batch: str | None = None  # incremental run: which rows were checked (None = all)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if not e.success]

    @property
    def failed_critical(self) -> int:
        return sum(e.severity == "critical" for e in self.failed)

    @property
    def failed_warning(self) -> int:
        return sum(e.severity == "warning" for e in self.failed)

    @property
    def success(self) -> bool:
        return not self.failed

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.failed_critical:
            return "failed"
        return "warning" if self.failed_warning else "passed"


@dataclass
class ScrubOutcome:
    """Archive (and backup) objects re-read against their manifests."""

    checked: int = 0
    ok: int = 0
    cold: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def add(self, other: ScrubOutcome, what: str) -> None:
        """Count ``other`` (e.g. the backups) in with this one; notes keep where they came from."""
        self.checked += other.checked
        self.ok += other.ok
        self.cold += other.cold
        self.failures += [{**item, "kind": what} for item in other.failures]
        if other.note:
            self.note = "; ".join(filter(None, [self.note, f"{what}: {other.note}"]))


def summarize(
    suites: list[SuiteOutcome],
    scrub: ScrubOutcome | None,
    docs_url: str | None,
    docs_pages: dict[str, str] | None = None,
    docs_expires: str | None = None,
) -> dict[str, Any]:
    """The flow's return value (the nightly job reads it).

    ``docs_pages`` maps each suite to its Data Docs page of this run; ``docs_expires`` is
    when those links stop working (presigned S3 links), None when they do not expire.
    """
    failures = [
        {
            "suite": s.suite,
            "expectation": e.name,
            "severity": e.severity,
            "unexpected_count": e.unexpected_count,
            "sample": e.sample,
            "error": e.error,
        }
        for s in suites
        for e in s.failed
    ]
    for item in scrub.failures if scrub else []:
        failures.append({"suite": "archive-scrub", "severity": "critical", **item})
    scrub_critical = len(scrub.failures) if scrub else 0
    critical = sum(s.failed_critical for s in suites) + scrub_critical
    return {
        "success": critical == 0,
        "suites": len(suites),
        "passed": sum(s.status == "passed" for s in suites),
        "skipped": sum(s.status == "skipped" for s in suites),
        "expectations": sum(len(s.expectations) for s in suites),
        "failed_critical": critical,
        "failed_warning": sum(s.failed_warning for s in suites),
        "failures": failures,
        "per_suite": {s.suite: s.status for s in suites},
        "scrub": asdict(scrub) if scrub else None,
        "data_docs_url": docs_url,
        "data_docs_pages": docs_pages or {},
        "data_docs_expires": docs_expires,
        "batches": {s.suite: s.batch for s in suites if s.batch},
    }


def table_rows(suites: list[SuiteOutcome]) -> list[dict[str, Any]]:
    """One row per suite for the table artifact and the CLI."""
    return [
        {
            "suite": s.suite,
            "target": f"{s.datasource}:{s.target}",
            "status": s.status,
            "expectations": len(s.expectations),
            "failed_critical": s.failed_critical,
            "failed_warning": s.failed_warning,
            "unexpected": sum(e.unexpected_count or 0 for e in s.failed),
            "seconds": round(s.seconds, 3),
            "note": s.skipped or "",
        }
        for s in suites
    ]


def render_markdown(summary: dict[str, Any], suites: list[SuiteOutcome]) -> str:
    """The markdown artifact: outcome per suite, every failure with counts and sample keys."""
    verdict = "FAILED" if summary["failed_critical"] else "passed"
    lines = [
        f"# Data validation {verdict}",
        "",
        f"{summary['suites']} suites, {summary['expectations']} expectations: "
        f"{summary['passed']} suites passed, {summary['failed_critical']} critical and "
        f"{summary['failed_warning']} warning failures, {summary['skipped']} skipped.",
        "",
        "| suite | target | status | expectations | critical | warning |",
        "|---|---|---|---:|---:|---:|",
    ]
    for s in suites:
        status = f"skipped: {s.skipped}" if s.skipped else s.status
        lines.append(
            f"| {s.suite} | {s.datasource}:{s.target} | {status} | {len(s.expectations)} "
            f"| {s.failed_critical} | {s.failed_warning} |"
        )
    lines += ["", "## Failures", ""]
    if not summary["failures"]:
        lines.append("None: every expectation held (a zero here means all rows passed).")
    for item in summary["failures"]:
        lines.append(_failure_line(item))
    lines += ["", _scrub_line(summary.get("scrub")), ""]
    lines += _docs_lines(summary)
    return "\n".join(lines) + "\n"


def _docs_lines(summary: dict[str, Any]) -> list[str]:
    """Markdown links: the failing suites' pages first, then the index; the expiry stated."""
    docs = summary.get("data_docs_url")
    if not docs:
        return ["Data Docs: not built (docs=False)."]
    pages = summary.get("data_docs_pages") or {}
    failing = list(dict.fromkeys(f["suite"] for f in summary["failures"] if f["suite"] in pages))
    links = [f"[{name} (failed)]({pages[name]})" for name in failing]
    lines = ["Data Docs: " + ", ".join([*links, f"[all runs]({docs})"])]
    expires = summary.get("data_docs_expires")
    if expires:
        lines.append(f"These links are presigned and stop working at {expires} UTC.")
    return lines


def _failure_line(item: dict[str, Any]) -> str:
    what = item.get("expectation") or item.get("object_key", "")
    count = item.get("unexpected_count")
    detail = item.get("error") or item.get("problem") or ""
    sample = item.get("sample") or []
    text = f"- **{item['severity']}** `{item['suite']}` / `{what}`"
    if count is not None:
        text += f": {count} unexpected"
    if sample:
        text += f"; sample: `{sample[:10]}`"
    if detail:
        text += f" — {detail}"
    return text


def _scrub_line(scrub: dict[str, Any] | None) -> str:
    if not scrub:
        return "Archive scrub: not run."
    if not scrub["checked"] and scrub.get("note"):
        return f"Archive scrub: 0 objects checked ({scrub['note']})."
    return (
        f"Archive and backup scrub: {scrub['checked']} objects sampled, {scrub['ok']} matched "
        f"their manifest, {len(scrub['failures'])} failed, {scrub['cold']} cold (not readable "
        f"without a restore). {scrub.get('note') or ''}".rstrip()
    )
