"""Data Docs that work where servers live: a suite run's page renders in headless Chromium with
no network and shows the failed expectation's name, count and failing keys; old runs are
pruned; on S3 the link is presigned and opens as HTML."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest
import sqlalchemy as sa

from steward.errors import IntegrityViolation
from steward.settings import Settings
from steward.storage import open_object_store
from steward.validation import run_validation
from tests.conftest import service_missing
from tests.validation.conftest import connect

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# The page is loaded in a frame; innerText is what a reader sees (hidden text is left out).
WRAPPER = """<!DOCTYPE html><html><body>
<iframe id="page" src="{src}" onload="document.getElementById('seen').textContent =
 this.contentDocument.body.innerText"></iframe><pre id="seen">NOT RENDERED</pre></body></html>"""


def visible_text(page: Path, tmp_path: Path) -> str:
    """What headless Chromium shows of ``page``, in a network namespace with no network."""
    chromium = shutil.which("chromium")
    if chromium is None:
        service_missing("chromium (apt-get install -y chromium)")
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=page.as_uri()))
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
    browser += ["--allow-file-access-from-files", "--virtual-time-budget=5000"]
    browser += ["--dump-dom", wrapper.as_uri()]
    done = subprocess.run(
        ["unshare", "--net", *browser], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = done.stdout.split('<pre id="seen">', 1)[1].split("</pre>", 1)[0]
    assert seen != "NOT RENDERED"
    return seen


def break_order_totals(settings: Settings, ids: tuple[int, ...]) -> None:
    with connect(settings) as conn:
        for order_id in ids:
            conn.execute(
                sa.text("UPDATE orders SET total = total + 5 WHERE id = :i"), {"i": order_id}
            )


def failing_run(settings: Settings, **options) -> dict:
    with pytest.raises(IntegrityViolation) as failed:
        run_validation(settings, ["orders", "users"], docs=True, scrub_objects=0, **options)
    return failed.value.summary  # type: ignore[attr-defined]


@sqlite_only
def test_failed_suite_page_renders_offline_with_name_count_and_keys(app_settings, tmp_path) -> None:
    settings = app_settings()
    break_order_totals(settings, (13, 21))
    summary = failing_run(settings)
    link = summary["data_docs_pages"]["orders"]
    assert link.startswith("file://") and summary["data_docs_expires"] is None
    page = Path(url2pathname(urlsplit(link).path))
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    seen = visible_text(page, tmp_path)
    assert "Suite orders: FAILED" in seen
    assert "total_equals_items" in seen and "critical" in seen
    assert '"id": 13' in seen and '"id": 21' in seen  # the failing keys, on screen
    assert "Held (" in seen  # the expectations that held are listed too
    index = page.parents[2] / "index.html"
    assert "orders (failed)" in visible_text(index, tmp_path)


@sqlite_only
def test_old_runs_are_pruned_past_retention(app_settings) -> None:
    settings = app_settings(validation__docs_keep_runs="2")
    break_order_totals(settings, (5,))
    first = failing_run(settings)
    failing_run(settings)
    third = failing_run(settings)
    store = open_object_store(settings)
    pages = sorted(o.key for o in store.list("docs/validation/runs/"))
    assert len(pages) == 4  # two runs kept, two suites each
    first_page = Path(url2pathname(urlsplit(first["data_docs_pages"]["orders"]).path))
    assert not first_page.exists()
    assert Path(url2pathname(urlsplit(third["data_docs_pages"]["orders"]).path)).exists()
    index = store.get_bytes("docs/validation/index.html").decode()
    assert index.count("orders (failed)") == 2


@sqlite_only
def test_s3_link_is_presigned_opens_as_html_and_states_its_expiry(
    app_settings, s3_url, moto_endpoint
) -> None:
    settings = app_settings(
        objects__url=s3_url, objects__endpoint_url=moto_endpoint,
        validation__docs_url_expiry_seconds="3600",
    )  # fmt: skip
    break_order_totals(settings, (8,))
    summary = failing_run(settings)
    link = summary["data_docs_pages"]["orders"]
    assert link.startswith(moto_endpoint) and "Signature=" in link
    assert summary["data_docs_expires"]
    with urllib.request.urlopen(link, timeout=30) as response:  # what a browser does
        assert response.headers["Content-Type"].startswith("text/html")
        body = response.read().decode()
    assert "total_equals_items" in body and "{&quot;id&quot;: 8" in body
