"""ROUGE-1, ROUGE-2 and ROUGE-L exactly as `rouge-score` 0.1.2 computes them (`RougeScorer(types)` with its
defaults: no stemming, F-measure from precision and recall), with a bit-parallel LCS.

Tokenizers (TOKENIZERS, picked by name):
* `rouge_score` (the default, rouge-score's own): lower-case, replace every run of characters that are
  not `[a-z0-9]` with a space, split. So `rename_column` is two tokens, `café` is `caf`, and a text in a
  non-Latin script has no token at all (its score is 0, as rouge-score gives).
* `unicode`: lower-case, runs of letters and digits of any script (`[^\\W_]+`). The same tokens as
  `rouge_score` on ASCII text; keeps `café`, Cyrillic or Greek words. Not what rouge-score prints on
  non-ASCII text. The canaries and shadow comparisons use it.

Stemming (rouge-score's `use_stemmer=True`, NLTK's Porter stemmer) is not implemented: scores match
rouge-score's default, unstemmed, behaviour only.

The measures take token lists (`TOKENIZERS[name](text)`), in rouge-score's order: `(target, prediction)` =
(reference, output). Precision is over the prediction's tokens, recall over the target's; an empty side
scores 0 (P = R = F = 0), as in rouge-score.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_WORD = re.compile(r"[^\W_]+")


def rouge_score_tokens(text: str) -> list[str]:
    """rouge-score's DefaultTokenizer without stemming (lower() first, so e.g. the Kelvin sign is a `k`)."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def unicode_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"rouge_score": rouge_score_tokens, "unicode": unicode_tokens}


class Rouge(NamedTuple):
    precision: float
    recall: float
    fmeasure: float


def _rouge(hits: int, target_count: int, prediction_count: int) -> Rouge:
    # rouge-score's arithmetic, operation for operation, so the floats are the same ones.
    precision = hits / max(prediction_count, 1)
    recall = hits / max(target_count, 1)
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return Rouge(precision, recall, f)


def lcs_len(x: list[str], y: list[str]) -> int:
    """Length of the longest common subsequence of two token lists, bit-parallel (Hyyrö 2004): one
    big-integer add, subtract, and, or per token of the shorter list, each over len(longer) bits, so two
    2,000-token answers take about a millisecond instead of 4 million Python steps."""
    if len(x) > len(y):
        x, y = y, x
    if not x:
        return 0
    masks: dict[str, int] = {}
    for j, tok in enumerate(y):  # bit j of masks[tok] is set where y[j] == tok
        masks[tok] = masks.get(tok, 0) | (1 << j)
    full = (1 << len(y)) - 1
    v = full  # a 0 bit marks a column where the LCS grew
    for tok in x:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(y) - v.bit_count()


def rouge_l(target: list[str], prediction: list[str]) -> Rouge:
    """ROUGE-L of two token lists (LCS over the whole texts, not rougeLsum's per-sentence union)."""
    if not target or not prediction:
        return Rouge(0.0, 0.0, 0.0)
    return _rouge(lcs_len(target, prediction), len(target), len(prediction))


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(target: list[str], prediction: list[str], n: int) -> Rouge:
    """ROUGE-N of two token lists: clipped n-gram overlap (each n-gram counted at most as often as the
    other text has it)."""
    t, p = _ngrams(target, n), _ngrams(prediction, n)
    hits = sum(min(count, p[gram]) for gram, count in t.items())
    return _rouge(hits, sum(t.values()), sum(p.values()))
