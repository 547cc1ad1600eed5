"""Compare and gate on constructed runs: means, CIs, per-tag, worst regressions, exit codes."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from hedgeway.cli import main
from hedgeway.evals.compare import bootstrap_ci, compare
from hedgeway.evals.store import EvalStore, Result, Score


def rows(values: dict[str, float | None], scorer: str = "rouge_l"):
    return [(cid, scorer, v, "") for cid, v in values.items()]


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    v = np.random.default_rng(5).random(200)
    lo, hi = bootstrap_ci(v, seed=3)
    assert lo < v.mean() < hi and hi - lo < 0.2
    assert (lo, hi) == bootstrap_ci(v, seed=3)
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def test_compare_means_tags_worst_and_gate():
    base = rows({"a": 1.0, "b": 1.0, "c": 0.5, "d": 0.5}) + rows({"a": 1, "b": 1, "c": 1, "d": 1}, "exact")
    cand = rows({"a": 1.0, "b": 0.2, "c": 0.5, "d": None}) + rows({"a": 1, "b": 1, "c": 1, "d": 1}, "exact")
    tags = {"a": ["x"], "b": ["x"], "c": ["y"], "d": []}
    r = compare(base, cand, tags, max_drop=0.03)
    by = {row.scorer: row for row in r.rows}
    rl = by["rouge_l"]
    assert rl.n == 3 and rl.base == pytest.approx(2.5 / 3) and rl.cand == pytest.approx(1.7 / 3)
    assert rl.cand_unscored == 1 and rl.failed and not by["exact"].failed and r.failed
    assert r.tags["x"]["rouge_l"] == (2, 1.0, pytest.approx(0.6)) and r.tags["y"]["rouge_l"] == (1, 0.5, 0.5)
    assert r.tags["(untagged)"]["exact"][0] == 1
    assert r.worst == [("b", "rouge_l", 1.0, pytest.approx(0.2))]
    assert not compare(base, base, tags).failed
    # a drop within the bound passes; just beyond it fails
    small = rows({"a": 0.98, "b": 1.0, "c": 0.5, "d": 0.5})
    assert not compare(base[:4], small, tags, max_drop=0.03).failed
    assert compare(base[:4], small, tags, max_drop=0.004).failed


def test_a_candidate_that_errors_scores_zero_not_missing():
    base = rows({"a": 1.0, "b": 1.0})
    cand = rows({"a": 1.0})  # b: the candidate errored, so it has no score
    assert not compare(base, cand, {}).failed  # without knowing, b is left out...
    r = compare(base, cand, {}, errored=(set(), {"b"}))
    assert r.failed and r.rows[0].cand == 0.5  # ...knowing it errored, it counts as 0


def _store_run(store: EvalStore, run: str, values: dict[str, float], tag: str = "t", error: set = frozenset()):
    for cid, v in values.items():
        err = "HTTP 502: boom" if cid in error else None
        store.save(Result(run, cid, "m", None if err else "out", err, 10.0, 3, 4, Decimal("0.001"), tags=[tag]),
                   [] if err else [Score("exact", v), Score("llm_judge", None, "unparseable")])


def test_cli_compare_exit_codes_and_report(tmp_path, capsys):
    db = f"sqlite:///{tmp_path}/ev.db"
    store = EvalStore(db)
    _store_run(store, "base", {f"c{i}": 1.0 for i in range(20)})
    _store_run(store, "same", {f"c{i}": 1.0 for i in range(20)})
    _store_run(store, "worse", {f"c{i}": (0.0 if i < 2 else 1.0) for i in range(20)})  # mean 0.9
    _store_run(store, "errs", {f"c{i}": 1.0 for i in range(20)}, error={"c0"})  # 1 of 20 errors: 0.95
    store.close()
    report = tmp_path / "r.md"
    assert main(["eval", "compare", "base", "same", "--db", db, "--report", str(report)]) == 0
    text = report.read_text()
    assert "**PASS**" in text and "| exact | 20 | 1.000 [1.000, 1.000]" in text and "| base | 20 | 0 | 0.020000 |" in text
    assert "llm_judge: no case scored in both runs (unscored: baseline 20, candidate 20)" in text
    assert main(["eval", "compare", "base", "worse", "--db", db]) == 1
    out = capsys.readouterr().out
    assert "**FAIL**" in out and "| c0 | exact | 1.000 | 0.000 | -1.000 |" in out
    assert main(["eval", "compare", "base", "worse", "--db", db, "--max-drop", "0.2"]) == 0
    assert main(["eval", "compare", "base", "errs", "--db", db]) == 1
    assert main(["eval", "compare", "base", "errs", "--db", db, "--max-drop", "0.06"]) == 0
    assert main(["eval", "compare", "base", "nope", "--db", db]) == 2
    assert "no stored run named 'nope'" in capsys.readouterr().err
