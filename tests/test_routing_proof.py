"""Training a route's router from its own labels, and the gate that cannot fool itself.

Made-up assistant traffic whose strong-vs-weak outcome depends on the text (real MiniLM embeddings,
computed once): it comes out proven; the same prompts with shuffled labels, or labels drawn without
regard to the text, never do, across many seeds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hedgeway.cli import main
from hedgeway.routing.features import prompt_of
from hedgeway.routing.labelled import minilm_embed, read_lines
from hedgeway.routing.proof import train_from_labels
from hedgeway.routing.trained import TrainedModel, TrainedRouter

HARD = ["Prove that there are infinitely many primes of the form {} and derive the bound step by step.",
        "Implement a lock-free {} queue in C++ and explain the memory ordering you rely on.",
        "Find the flaw in this argument about {} and write a rigorous counter-example.",
        "Derive the closed form of the {} recurrence and prove it by induction."]
EASY = ["What colour is a {}?", "Say hello to my friend who likes {}.", "Give me a synonym for {}.",
        "Write one short sentence about a {}."]
FILL = ["apple", "river", "graph", "lantern", "violin", "tiger", "harbour", "pencil", "orbit", "meadow",
        "candle", "signal", "falcon", "pepper", "glacier", "ladder"]


def _prompts(n: int, rng: np.random.Generator) -> list[tuple[str, bool]]:
    out = []
    for _ in range(n):
        hard = bool(rng.random() < 0.5)
        out.append(((HARD if hard else EASY)[rng.integers(4)].format(FILL[rng.integers(len(FILL))]), hard))
    return out


@pytest.fixture(scope="module")
def traffic():
    """240 prompts with their MiniLM vectors and graded qualities: on hard prompts the strong model is
    usually better (8 vs 4 of 10), on easy ones both models are as good (noise only)."""
    rng = np.random.default_rng(7)
    prompts = _prompts(240, rng)
    vecs = minilm_embed([p for p, _ in prompts])
    rows = []
    for i, ((text, hard), v) in enumerate(zip(prompts, vecs)):
        strong = float(np.clip(rng.normal(8 if hard else 8, 1.5), 1, 10))
        weak = float(np.clip(rng.normal(4 if hard else 8, 1.5), 1, 10))
        rows.append({"id": f"p{i}", "prompt": text, "embedding": v.tolist(), "strong": strong, "weak": weak})
    return rows


def test_labels_that_depend_on_the_text_come_out_proven(traffic):
    report, model, oof = train_from_labels(traffic, cv=5, repeats=2, permutations=60, seed=0)
    assert report["proven"] is True
    assert report["ci"][0] > report["random_band"][1] and report["apgr"] > 0.6
    assert report["random_band"][0] < 0.5 < report["random_band"][1]
    assert [p["n"] for p in report["learning_curve"]] == [50, 100, 200, 240]
    scores = {o["id"]: o["score"] for o in oof}
    assert len(scores) == 240
    hard = [scores[r["id"]] for r in traffic if r["weak"] < 6.5 and "Prove" in r["prompt"]]
    easy = [scores[r["id"]] for r in traffic if "colour" in r["prompt"]]
    assert np.median(hard) > np.median(easy)  # out-of-fold: higher = needs the strong model


@pytest.mark.parametrize("seed", range(24))
def test_shuffled_labels_never_come_out_proven(traffic, seed):
    rng = np.random.default_rng(1000 + seed)
    perm = rng.permutation(len(traffic))
    shuffled = [{**r, "strong": traffic[j]["strong"], "weak": traffic[j]["weak"]} for r, j in zip(traffic, perm)]
    report, _, _ = train_from_labels(shuffled, cv=5, repeats=1, permutations=40, seed=seed, curve_points=False)
    assert report["proven"] is False, report


@pytest.mark.parametrize("seed", range(12))
def test_preferences_drawn_without_regard_to_the_text_never_come_out_proven(traffic, seed):
    rng = np.random.default_rng(2000 + seed)
    coin = [{"id": r["id"], "prompt": r["prompt"], "embedding": r["embedding"],
             "strong_wins": float(rng.random() < 0.7)} for r in traffic]
    report, _, _ = train_from_labels(coin, cv=5, repeats=1, permutations=40, seed=seed, curve_points=False)
    assert report["proven"] is False, report


def test_strong_wins_means_quality_w_for_strong_and_1_minus_w_for_weak():
    data = read_lines([{"id": 1, "prompt": "a", "strong_wins": 1}, {"id": 2, "prompt": "b", "strong_wins": 0.25},
                       {"id": 3, "embedding": [1.0] + [0.0] * 383, "strong": 7, "weak": 9}])
    assert data.strong.tolist() == [1.0, 0.25, 7.0] and data.weak.tolist() == [0.0, 0.75, 9.0]
    assert data.prompts[2] is None and data.texts[:2] == ["a", "b"]
    for bad in ({"id": 1, "prompt": "a", "strong_wins": 2}, {"id": 1, "strong": 1, "weak": 0},
                {"id": 1, "prompt": "a", "strong": 1}, {"id": 1, "embedding": [0.1] * 10, "strong": 1, "weak": 0},
                {"id": 1, "prompt": "a", "strong": "nan", "weak": 0}):
        with pytest.raises(ValueError, match="label line 1"):
            read_lines([bad])


def test_embedding_only_labels_train_on_the_embedding_alone(traffic):
    rows = [{k: v for k, v in r.items() if k != "prompt"} for r in traffic]
    report, model, _ = train_from_labels(rows, cv=5, repeats=1, permutations=30, curve_points=False)
    assert report["features"] == ["embedding"] and model.w.shape == (384,) and report["proven"] is True


def test_cli_writes_report_oof_and_a_versioned_artefact(traffic, tmp_path, capsys):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "embedding"}) + "\n" for r in traffic))
    oof, model = tmp_path / "oof.jsonl", tmp_path / "route.npz"
    assert main(["router", "train", "--labels", str(labels), "--cv", "5", "--repeats", "2", "--permutations", "60",
                 "--oof-output", str(oof), "--output", str(model), "--version", "auto-3", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # one JSON object, nothing else on stdout
    report = json.loads(out[0])
    assert {"n", "apgr", "ci", "random_band", "proven", "learning_curve"} <= set(report)
    assert report["n"] == 240 and report["proven"] is True  # embedded by the CLI itself (real MiniLM)
    lines = [json.loads(x) for x in oof.read_text().splitlines()]
    assert [x["id"] for x in lines] == [r["id"] for r in traffic] and all(set(x) == {"id", "score"} for x in lines)
    art = TrainedModel.load(model)
    assert art.meta["version"] == "auto-3" and art.meta["proven"] is True and art.meta["n"] == 240
    assert art.meta["ci"] == report["ci"] and art.meta["random_band"] == report["random_band"]
    assert art.meta["features"]["blocks"] == ["embedding", "ngrams", "cues"] and art.meta["trained_at"]
    router = TrainedRouter({"model": str(model)})
    hard = router.score(prompt_of("Derive the closed form of the orbit recurrence and prove it by induction."))
    easy = router.score(prompt_of("What colour is a tiger?"))
    assert hard > easy and 0 <= easy <= 1 and 0 <= hard <= 1


def test_cli_rejects_unusable_labels(tmp_path, capsys):
    labels = tmp_path / "few.jsonl"
    rows = [{"id": i, "prompt": f"q{i}", "strong": 1, "weak": 0} for i in range(5)]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["router", "train", "--labels", str(labels), "--json"]) == 2
    assert "need at least" in capsys.readouterr().err
    rows = [{"id": i, "prompt": f"q{i}", "embedding": [1.0] + [0.0] * 383, "strong_wins": i % 2} for i in range(40)]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["router", "train", "--labels", str(labels), "--permutations", "5"]) == 2  # a band of 5: a guess
    assert "--permutations must be at least 20" in capsys.readouterr().err
    rows = [{**r, "strong_wins": 0.5} for r in rows]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["router", "train", "--labels", str(labels)]) == 2
    assert "APGR is undefined" in capsys.readouterr().err
