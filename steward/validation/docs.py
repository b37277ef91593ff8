"""Data Docs: Steward's own static HTML, one page per suite run, readable offline.

Every page is self-contained (inline CSS, no scripts, nothing fetched from a CDN), so it
renders on a server with no network. A suite run's page shows each failed expectation's name,
severity, unexpected count and failing keys (or rows), then the expectations that held.
Pages go to the object store under ``validation.docs_prefix``::

    docs/validation/index.html                 the runs kept, newest first, a link per suite
    docs/validation/runs.json                  that list, as data (for the next run)
    docs/validation/runs/<run id>/<suite>.html

Runs beyond ``validation.docs_keep_runs`` lose their pages. Links come from the store: a
``file://`` path for the local folder store, a presigned HTTPS URL for S3 (valid for
``validation.docs_url_expiry_seconds``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from steward.errors import ObjectNotFound
from steward.settings import Settings
from steward.storage import ObjectStore, open_object_store
from steward.validation.outcome import ExpectationOutcome, SuiteOutcome

__all__ = ["DataDocs", "build_data_docs", "render_suite_page"]

HTML = {"content-type": "text/html; charset=utf-8"}
STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.failed{color:#b3261e;font-weight:600}.warning{color:#8a5a00;font-weight:600}
.passed{color:#1a7f37;font-weight:600}.skipped{color:#57606a}code{font:13px ui-monospace,monospace}
.keys code{display:inline-block;background:#fff1f0;border:1px solid #ffc9c5;border-radius:3px;
padding:0 .3rem;margin:.1rem}.meta{color:#57606a}
"""


@dataclass
class DataDocs:
    """Where the site is: the index and each suite's page of this run, and until when."""

    store_index_key: str
    url: str
    pages: dict[str, str] = field(default_factory=dict)  # suite -> link to this run's page
    expires_at: str | None = None  # presigned links (S3) stop working then
    files: int = 0
    pruned: int = 0


def build_data_docs(
    settings: Settings,
    outcomes: list[SuiteOutcome],
    *,
    run_name: str = "steward",
    store: ObjectStore | None = None,
    now: dt.datetime | None = None,
) -> DataDocs:
    """Write this run's pages and the index; delete the pages of runs past retention."""
    store = store or open_object_store(settings)
    prefix = settings.validation.docs_prefix
    started = now or dt.datetime.now(dt.UTC)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    suites: dict[str, dict[str, str]] = {}
    for outcome in outcomes:
        key = f"runs/{run_id}/{outcome.suite}.html"
        page = render_suite_page(outcome, run_name=run_name, when=started)
        store.put(prefix + key, page.encode(), metadata=HTML)
        suites[outcome.suite] = {"status": outcome.status, "page": key}
    run = {"id": run_id, "name": run_name, "time": started.isoformat(), "suites": suites}
    runs = [run, *_read_runs(store, prefix)]
    keep, gone = (
        runs[: settings.validation.docs_keep_runs],
        runs[settings.validation.docs_keep_runs :],
    )
    pruned = _prune(store, prefix, gone)
    store.put(prefix + "runs.json", json.dumps(keep, indent=1).encode(), metadata={})
    store.put(prefix + "index.html", _render_index(keep).encode(), metadata=HTML)
    expiry = settings.validation.docs_url_expiry_seconds
    url, expires = store.share_url(prefix + "index.html", expires_seconds=expiry)
    pages = {
        name: store.share_url(prefix + item["page"], expires_seconds=expiry)[0]
        for name, item in suites.items()
    }
    return DataDocs(prefix + "index.html", url, pages, expires, len(outcomes) + 2, pruned)


def _read_runs(store: ObjectStore, prefix: str) -> list[dict[str, Any]]:
    try:
        runs = json.loads(store.get_bytes(prefix + "runs.json"))
    except (ObjectNotFound, json.JSONDecodeError, UnicodeDecodeError):
        return []
    return [r for r in runs if isinstance(r, dict) and isinstance(r.get("suites"), dict)]


def _prune(store: ObjectStore, prefix: str, runs: list[dict[str, Any]]) -> int:
    count = 0
    for run in runs:
        for item in run["suites"].values():
            store.delete(prefix + str(item.get("page")))
            count += 1
    return count


def render_suite_page(outcome: SuiteOutcome, *, run_name: str, when: dt.datetime) -> str:
    """One suite run as a self-contained HTML page."""
    e = html.escape
    failed = outcome.failed
    head = (
        f"<h1>Suite {e(outcome.suite)}: <span class='{_css(outcome.status)}'>"
        f"{e(outcome.status.upper())}</span></h1>"
        f"<p class='meta'>{e(outcome.datasource)}:{e(outcome.target)} · run {e(run_name)} · "
        f"{e(when.strftime('%Y-%m-%d %H:%M:%S UTC'))} · {len(outcome.expectations)} expectations, "
        f"{len(failed)} failed · {outcome.seconds:.2f} s"
        + (f" · rows checked: {e(outcome.batch)}" if outcome.batch else "")
        + "</p>"
    )
    if outcome.skipped:
        body = f"<p class='skipped'>Skipped: {e(outcome.skipped)}</p>"
    else:
        body = _failed_table(failed) + _passed_table([x for x in outcome.expectations if x.success])
    return _page(f"{outcome.suite} · {outcome.status}", head + body)


def _failed_table(failed: list[ExpectationOutcome]) -> str:
    if not failed:
        return "<h2>Failed expectations</h2><p class='passed'>None: every expectation held.</p>"
    rows = "".join(
        f"<tr><td><strong>{html.escape(x.name)}</strong><br><code>{html.escape(x.type)}</code>"
        f"{'<br>' + html.escape(x.description) if x.description else ''}</td>"
        f"<td class='{_css('failed' if x.severity == 'critical' else 'warning')}'>"
        f"{html.escape(x.severity)}</td>"
        f"<td>{'' if x.unexpected_count is None else x.unexpected_count}</td>"
        f"<td class='keys'>{_keys(x)}</td></tr>"
        for x in failed
    )
    return (
        "<h2>Failed expectations</h2><table><tr><th>expectation</th><th>severity</th>"
        f"<th>unexpected</th><th>failing keys / rows</th></tr>{rows}</table>"
    )


def _keys(item: ExpectationOutcome) -> str:
    if item.error:
        return f"error: {html.escape(item.error)}"
    shown = []
    for value in item.sample:
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
        shown.append(f"<code>{html.escape(text)}</code>")
    more = (item.unexpected_count or 0) - len(item.sample)
    return " ".join(shown) + (f" <span class='meta'>… and {more} more</span>" if more > 0 else "")


def _passed_table(passed: list[ExpectationOutcome]) -> str:
    if not passed:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(x.name)}</td><td><code>{html.escape(x.type)}</code></td>"
        f"<td>{html.escape(x.severity)}</td></tr>"
        for x in passed
    )
    return (
        f"<h2>Held ({len(passed)})</h2><table><tr><th>expectation</th><th>type</th>"
        f"<th>severity</th></tr>{rows}</table>"
    )


def _render_index(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        links = " ".join(
            f"<a class='{_css(item['status'])}' href='{html.escape(item['page'])}'>"
            f"{html.escape(name)} ({html.escape(item['status'])})</a>"
            for name, item in run["suites"].items()
        )
        rows.append(
            f"<tr><td>{html.escape(run['time'][:19].replace('T', ' '))}</td>"
            f"<td>{html.escape(str(run['name']))}</td><td>{links}</td></tr>"
        )
    table = "<table><tr><th>run (UTC)</th><th>name</th><th>suites</th></tr>" + "".join(rows)
    return _page("Data validation runs", "<h1>Data validation runs</h1>" + table + "</table>")


def _css(status: str) -> str:
    return status if status in ("failed", "warning", "passed", "skipped") else "failed"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
