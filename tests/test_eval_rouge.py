"""ROUGE as rouge-score 0.1.2 computes it: its tokenizer on awkward text, hand-computed P/R/F, and the
bit-parallel LCS against the plain O(n·m) dynamic programme on generated token lists."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeway.canary.quality import rouge_l as agreement
from hedgeway.errors import ConfigError
from hedgeway.evals.dataset import Case
from hedgeway.evals.rouge import lcs_len, rouge_l, rouge_n, rouge_score_tokens, unicode_tokens
from hedgeway.evals.scorers import SCORERS, Env


def dp_lcs(x: list[str], y: list[str]) -> int:
    """The textbook table, row by row."""
    prev = [0] * (len(y) + 1)
    for a in x:
        cur = [0]
        for j, b in enumerate(y):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def scorer(name: str, output: str, reference: str | None, **s):
    case = Case.model_validate({"id": "c", "prompt": "q", "reference": reference})
    return asyncio.run(SCORERS[name](output, case, s, Env()))


@pytest.mark.parametrize("text, tokens", [
    ("Use rename_column, then get_nearest_examples()", ["use", "rename", "column", "then", "get", "nearest",
                                                        "examples"]),
    ("Don't STOP-believing!", ["don", "t", "stop", "believing"]),
    ("Café naïve", ["caf", "na", "ve"]),  # non-ASCII letters are separators
    ("3.14 v1.2.3-rc4", ["3", "14", "v1", "2", "3", "rc4"]),
    ("这是中文 Ελληνικά", []),  # no Latin letter, no token
    ("\u212a and \u0130", ["k", "and", "i"]),  # lower() first: the Kelvin sign is k, dotted capital I is i + U+0307
    ("ＡＢＣ １２３", []),  # full-width letters and digits stay non-ASCII
    ("!!! ... ---", []),
    ("", []),
    ("tab\tnew\nline\r\nzero\u200bwidth", ["tab", "new", "line", "zero", "width"]),
])
def test_rouge_score_tokenizer(text, tokens):
    assert rouge_score_tokens(text) == tokens


def test_unicode_tokenizer_matches_on_ascii_and_keeps_other_scripts():
    text = "Use rename_column, Don't STOP 3.14!"
    assert unicode_tokens(text) == rouge_score_tokens(text)
    assert unicode_tokens("Café Привет мир 123") == ["café", "привет", "мир", "123"]


def test_rouge_l_hand_computed():
    # LCS(the cat sat on the mat | the cat on mat) = 4: P = 4/4 over the prediction, R = 4/6, F = 0.8
    r = rouge_l(rouge_score_tokens("The cat sat on the mat"), rouge_score_tokens("the cat on mat"))
    assert (r.precision, r.recall) == (1.0, 4 / 6) and r.fmeasure == pytest.approx(0.8, abs=1e-15)
    swapped = rouge_l(rouge_score_tokens("the cat on mat"), rouge_score_tokens("The cat sat on the mat"))
    assert (swapped.precision, swapped.recall) == (4 / 6, 1.0)  # precision is over the second (prediction)
    assert rouge_l(["a", "b", "c"], ["c", "b", "a"]).fmeasure == pytest.approx(1 / 3)
    assert rouge_l([], []) == (0.0, 0.0, 0.0) and rouge_l(["a"], []) == (0.0, 0.0, 0.0)  # as rouge-score


def test_rouge_n_hand_computed():
    t, p = ["the", "cat", "the", "cat"], ["the", "cat"]
    one = rouge_n(t, p, 1)  # clipped: the 1, cat 1 -> 2 hits; P 2/2, R 2/4
    assert (one.precision, one.recall) == (1.0, 0.5) and one.fmeasure == pytest.approx(2 / 3)
    two = rouge_n(t, p, 2)  # bigrams of t: (the cat) x2, (cat the) x1; p: (the cat) -> 1 hit; P 1, R 1/3
    assert (two.precision, two.recall) == (1.0, 1 / 3) and two.fmeasure == pytest.approx(0.5)
    assert rouge_n(["a"], ["a"], 2) == (0.0, 0.0, 0.0)  # no bigram on either side
    assert rouge_n(["a", "b"], ["b", "a"], 2) == (0.0, 0.0, 0.0) and rouge_n(["a", "b"], ["b", "a"], 1).fmeasure == 1.0


def test_scorers_use_rouge_scores_tokenizer():
    # With \w+ words, rename_column was one token: F was 0.4 here. rouge-score splits it.
    s = scorer("rouge_l", "Use rename_column", "use rename column")
    assert s.value == 1.0 and s.detail == "P 1.0000 R 1.0000" and s.parts == {"p": 1.0, "r": 1.0}
    assert scorer("rouge_l", "!!!", "!!!").value == 0.0  # rouge-score scores two token-less texts 0
    assert scorer("rouge_1", "Привет мир", "привет мир").value == 0.0
    assert scorer("rouge_1", "Привет мир", "привет мир", tokenizer="unicode").value == 1.0
    two = scorer("rouge_2", "the cat", "the cat the cat")
    assert two.value == pytest.approx(0.5) and two.parts == {"p": 1.0, "r": pytest.approx(1 / 3)}
    assert scorer("rouge_l", "x", None) is None
    with pytest.raises(ConfigError, match="scorers.rouge_l.use_stemmer"):
        scorer("rouge_l", "x", "x", use_stemmer=True)
    with pytest.raises(ConfigError, match="scorers.rouge_2.tokenizer: one of rouge_score, unicode"):
        scorer("rouge_2", "x", "x", tokenizer="nltk")


def test_canary_agreement_keeps_words_of_any_script_and_two_empty_answers_agree():
    assert agreement("", "") == 1.0 and agreement("!!!", "") == 1.0
    assert agreement("", "an answer") == 0.0
    assert agreement("Привет, мир", "привет мир") == 1.0
    assert agreement("call rename_column", "call rename column") == 1.0
    assert agreement("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)


tokens = st.lists(st.sampled_from("abcdef"), max_size=70)


@settings(max_examples=400, deadline=None)
@given(tokens, tokens)
def test_bit_parallel_lcs_equals_the_dynamic_programme(x, y):
    assert lcs_len(x, y) == dp_lcs(x, y) == lcs_len(y, x)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40).map(str), min_size=100, max_size=400),
       st.lists(st.integers(0, 40).map(str), min_size=100, max_size=400))
def test_bit_parallel_lcs_on_long_sequences_across_many_machine_words(x, y):
    assert lcs_len(x, y) == dp_lcs(x, y)
