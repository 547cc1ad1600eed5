"""EvalStore on PostgreSQL (its own schema, dropped afterwards): the same contract as on SQLite."""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pytest
from conftest import require_service

from hedgeway.evals.store import EvalStore, Result, Score

PG = os.environ.get("HEDGEWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def pg_url():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        require_service("PostgreSQL", str(exc).strip().splitlines()[0])
    schema = f"hw_eval_{uuid.uuid4().hex[:10]}"
    yield f"{PG}?schema={schema}"
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.close()


def test_postgres_store_round_trip_replace_and_done(pg_url):
    store = EvalStore(pg_url)
    store.save(Result("r", "a", "m", "out", None, 12.5, 3, 4, Decimal("0.000123456789"), "req-1", "dep",
                      tags=["t1", "t2"]), [Score("exact", 1.0), Score("llm_judge", None, "unparseable")])
    store.save(Result("r", "b", "m", None, "HTTP 502: x"), [])
    assert store.done("r") == {"a"}
    store.save(Result("r", "b", "m", "late", None), [Score("exact", 0.0)])  # a retried case replaces its row
    assert store.done("r") == {"a", "b"}
    rows = {r["case_id"]: r for r in store.results("r")}
    assert rows["a"]["cost"] == Decimal("0.000123456789") and rows["a"]["tags"] == ["t1", "t2"]
    assert rows["b"]["output"] == "late" and rows["b"]["error"] is None
    assert store.scores("r") == [("a", "exact", 1.0, ""), ("a", "llm_judge", None, "unparseable"),
                                 ("b", "exact", 0.0, "")]
    assert store.runs() == [("r", "m", 2)]
    store.close()
