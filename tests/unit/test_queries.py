"""The named-query file and its parser."""

from __future__ import annotations

import pytest

from flashsale.storage.queries import load_queries, parse_queries


def test_sections_become_named_queries_without_comments() -> None:
    text = "-- header\n-- name: one\n-- what it does\nSELECT 1;\n\n-- name: two\nSELECT $1\n"
    assert parse_queries(text) == {"one": "SELECT 1", "two": "SELECT $1"}


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_the_shipped_file_has_every_query_the_store_runs() -> None:
    queries = load_queries()
    for name in ["ping", "create_coupon", "decide_batch", "sold_out_batch", "claim_one"]:
        assert queries[name].strip()
    assert all("$" not in q or "$1" in q for q in queries.values())
