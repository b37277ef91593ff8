"""Suite files and their index: the shipped suites load; every malformed shape is refused with
the file, the expectation and the problem named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steward.errors import ConfigError
from steward.validation import load_suites
from steward.validation.suites import render_query
from tests.validation.conftest import EXPECTATIONS


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_shipped_suites_cover_every_example_table_with_a_severity_each() -> None:
    suites = load_suites(EXPECTATIONS)
    by_name = {s.name: s for s in suites}
    assert set(by_name) >= {
        "users", "products", "prices", "inventory", "orders", "order_items", "payments",
        "outbox", "product_reviews",
    }  # fmt: skip
    assert by_name["product_reviews"].datasource == "mongo"
    assert all(e.severity in ("critical", "warning") for s in suites for e in s.expectations)
    invariants = {e.name for s in suites for e in s.expectations if e.is_query}
    assert invariants >= {
        "total_equals_items", "payments_within_total", "on_hand_matches_movements",
        "one_price_in_force", "product_present", "pending_within_lag",
    }  # fmt: skip
    assert by_name["outbox"].key == ("seq",)


def test_only_the_named_suites_load_and_an_unknown_name_is_refused() -> None:
    assert [s.name for s in load_suites(EXPECTATIONS, ["orders"])] == ["orders"]
    with pytest.raises(ConfigError, match=r"unknown suite\(s\) 'ordres'.*orders"):
        load_suites(EXPECTATIONS, ["ordres"])


def test_malformed_suite_file_is_named(suites_dir: Path) -> None:
    (suites_dir / "orders.json").write_text('{"name": "orders", "expectations": [')
    with pytest.raises(ConfigError, match=r"orders\.json: malformed JSON"):
        load_suites(suites_dir)


def test_missing_index_and_missing_suite_file_are_named(suites_dir: Path, tmp_path) -> None:
    (suites_dir / "prices.json").unlink()
    with pytest.raises(ConfigError, match=r"prices\.json: suite file of 'prices' is missing"):
        load_suites(suites_dir)
    with pytest.raises(ConfigError, match=r"index\.json: the suite index is missing"):
        load_suites(tmp_path / "nowhere")


def test_expectation_without_name_and_without_type_are_named(suites_dir: Path) -> None:
    path = suites_dir / "orders.json"
    edit_json(path, lambda d: d["expectations"][0]["meta"].pop("name"))
    with pytest.raises(ConfigError, match=r"orders\.json, expectations\[0\]: meta\.name"):
        load_suites(suites_dir)
    edit_json(path, lambda d: d["expectations"][0].update(meta={"name": "id_not_null"}, type=3))
    with pytest.raises(ConfigError, match=r"orders\.json, expectation 'id_not_null': 'type'"):
        load_suites(suites_dir)


def test_severity_missing_invalid_or_for_an_unknown_expectation(suites_dir: Path) -> None:
    index = suites_dir / "index.json"

    def set_severity(value):
        def change(data):
            entry = next(e for e in data["suites"] if e["suite"] == "orders")
            entry["severity"].update(value)

        edit_json(index, change)

    set_severity({"status_in_set": "fatal"})
    with pytest.raises(ConfigError, match=r"'status_in_set': severity 'fatal'.*critical, warning"):
        load_suites(suites_dir)
    set_severity({"status_in_set": "warning", "no_such_check": "critical"})
    with pytest.raises(ConfigError, match=r"orders\.json: the index gives a severity for 'no_such"):
        load_suites(suites_dir)


def test_index_entry_shapes_are_checked(suites_dir: Path) -> None:
    index = suites_dir / "index.json"
    edit_json(index, lambda d: d["suites"][0].update(datasource="oracle"))
    with pytest.raises(ConfigError, match=r"suites\[0\]: datasource 'oracle'; accepted: sql"):
        load_suites(suites_dir)
    edit_json(index, lambda d: d["suites"][0].update(datasource="sql", table=""))
    with pytest.raises(ConfigError, match=r"suites\[0\]: missing table"):
        load_suites(suites_dir)
    edit_json(index, lambda d: d.update(suites=[]))
    with pytest.raises(ConfigError, match="at least one suite"):
        load_suites(suites_dir)


def test_duplicate_expectation_names_are_refused(suites_dir: Path) -> None:
    path = suites_dir / "users.json"
    edit_json(path, lambda d: d["expectations"].append(d["expectations"][0]))
    with pytest.raises(ConfigError, match=r"users\.json: expectation name 'id_not_null' appears"):
        load_suites(suites_dir)


def test_query_parameters_are_numbers_from_settings_and_batch_stays() -> None:
    query = "SELECT * FROM {batch} WHERE age > {lag} AND n < {cap}"
    rendered = render_query(query, {"lag": 3600, "cap": 2.5}, "f.json")
    assert rendered == "SELECT * FROM {batch} WHERE age > 3600 AND n < 2.5"
    with pytest.raises(ConfigError, match=r"f\.json: unknown query parameter \{nope\}; known: "):
        render_query("SELECT {nope}", {"lag": 1}, "f.json")


def test_two_expectations_with_the_same_type_and_arguments_are_refused(suites_dir: Path) -> None:
    """GX ignores names and keeps one of two identical expectations: the other would never
    report, so `validate check` refuses the pair, naming both."""
    from steward.validation.checks import suite_problems

    def twin(data):
        copy = json.loads(json.dumps(data["expectations"][0]))
        copy["meta"]["name"] = "id_not_null_again"
        data["expectations"].append(copy)

    def severity(data):
        users = next(suite for suite in data["suites"] if suite["suite"] == "users")
        users["severity"]["id_not_null_again"] = "critical"

    edit_json(suites_dir / "users.json", twin)
    edit_json(suites_dir / "index.json", severity)
    suites = load_suites(suites_dir, ["users"])
    [problem] = suite_problems(suites, "postgresql", {})
    assert "expectation 'id_not_null_again': same type and arguments as expectation " in problem
    assert "'id_not_null'" in problem and "users.json" in problem
