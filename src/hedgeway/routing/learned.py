"""The learned router: logistic regression over hashed word n-grams + the heuristic's prompt cues.

It predicts P(the strong model answers better than the weak one) from per-prompt outcomes of a strong
and a weak model (`hedgeway router train`). Inference is numpy-only: hash the prompt's words and
bigrams (CRC32, signed, `dim` buckets), take a sparse dot product with the weights, add the cue terms,
squash. The artefact is one `.npz` (float32 weights + JSON metadata with a format version), loaded once
at start; the shipped default lives in `hedgeway/data/router/`.

Training is full-batch Adam on the log loss with L2, on a CSR matrix kept in numpy (no scikit-learn):
a few seconds for ~20k prompts.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hedgeway.routing.features import CUES, Prompt, cues, words

FORMAT = 2  # 2: bigram hashes mix word CRC32s (1 hashed the bigram's text)
DEFAULT_MODEL = "learned-v1.npz"


_WORD_HASH: dict[str, int] = {}  # memo of CRC32 per word (bounded: cleared past 200k words)


def _word_hashes(ws: list[str]) -> np.ndarray:
    memo = _WORD_HASH
    if len(memo) > 200_000:
        memo.clear()
    out = []
    for w in ws:
        h = memo.get(w)
        if h is None:
            h = memo[w] = zlib.crc32(w.encode())
        out.append(h)
    return np.array(out, np.uint64)


def sparse_features(prompt: Prompt, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the prompt's hashed unigrams + bigrams, L2-normalised (signed log counts).
    A bigram's hash mixes its two words' CRC32s; bit 31 of a hash gives the feature's sign."""
    hw = _word_hashes(words(prompt.text))
    if len(hw) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    prev = np.concatenate([np.array([0x9E3779B9], np.uint64), hw[:-1]])
    bigrams = ((prev * np.uint64(1000003)) ^ hw) & np.uint64(0xFFFFFFFF)
    h = np.concatenate([hw, bigrams])
    keys = (h % np.uint64(dim)).astype(np.int64) * 2 + ((h >> np.uint64(31)) & np.uint64(1)).astype(np.int64)
    uniq, counts = np.unique(keys, return_counts=True)
    idx = uniq // 2
    val = np.where(uniq % 2 == 1, 1.0, -1.0) * counts  # same bucket, opposite signs: net below
    idx, inv = np.unique(idx, return_inverse=True)
    val = np.bincount(inv, weights=val).astype(np.float32)
    val = np.sign(val) * np.log1p(np.abs(val))
    norm = float(np.sqrt((val * val).sum())) or 1.0
    return idx, val / norm


def dense_features(prompt: Prompt) -> np.ndarray:
    c = cues(prompt)
    return np.array([c[k] for k in CUES], np.float32)


@dataclass
class LearnedModel:
    w: np.ndarray  # float32 [dim]
    wc: np.ndarray  # float32 [len(CUES)]
    b: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.w.shape[0])

    def score(self, prompt: Prompt) -> float:
        idx, val = sparse_features(prompt, self.dim)
        z = float(val @ self.w[idx]) + float(dense_features(prompt) @ self.wc) + self.b
        return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))

    def save(self, path: str | Path) -> None:
        meta = {**self.meta, "format": FORMAT, "cues": list(CUES)}
        np.savez_compressed(path, w=self.w.astype(np.float16), wc=self.wc, b=np.float32(self.b),
                            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "LearnedModel":
        """Load an artefact (None: the shipped default). Raises ValueError on an unknown format."""
        if path is None:
            with resources.as_file(resources.files("hedgeway.data") / "router" / DEFAULT_MODEL) as p:
                return cls.load(p)
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != FORMAT or meta.get("cues") != list(CUES):
                raise ValueError(f"{path}: router artefact format {meta.get('format')} (expected {FORMAT})")
            return cls(z["w"].astype(np.float32), z["wc"].astype(np.float32), float(z["b"]), meta)


def _csr(prompts: Sequence[Prompt], dim: int):
    rows = [sparse_features(p, dim) for p in prompts]
    lengths = np.array([len(r[0]) for r in rows], np.int64)
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]).astype(np.float64) if rows else np.zeros(0)
    rowid = np.repeat(np.arange(len(rows)), lengths)
    dense = np.stack([dense_features(p) for p in prompts]).astype(np.float64)
    return indices, data, rowid, dense


def train(prompts: Sequence[Prompt], strong: Sequence[float], weak: Sequence[float], *, dim: int = 1 << 15,
          l2: float = 1e-4, epochs: int = 300, lr: float = 0.05, target: str = "wins",
          meta: dict[str, Any] | None = None) -> LearnedModel:
    """Fit the model. Qualities are in [0, 1] (scale graded scores first). `target`: "wins" labels a
    prompt 1 when strong > weak; "soft" uses 0.5 + (strong − weak)/2 (ties count as indifferent)."""
    s, wk = np.asarray(strong, np.float64), np.asarray(weak, np.float64)
    y = (s > wk).astype(np.float64) if target == "wins" else np.clip(0.5 + (s - wk) / 2, 0, 1)
    indices, data, rowid, dense = _csr(prompts, dim)
    n = len(prompts)
    w, wc, b = np.zeros(dim), np.zeros(dense.shape[1]), math.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6))
    params = [w, wc, np.array([b])]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    started = time.time()
    for t in range(1, epochs + 1):
        z = np.bincount(rowid, weights=data * w[indices], minlength=n) + dense @ wc + params[2][0]
        g = (1 / (1 + np.exp(-z)) - y) / n
        grads = [np.bincount(indices, weights=data * g[rowid], minlength=dim) + l2 * w,
                 dense.T @ g + l2 * wc, np.array([g.sum()])]
        for p, gr, mm, vv in zip(params, grads, m, v):
            mm *= 0.9
            mm += 0.1 * gr
            vv *= 0.999
            vv += 0.001 * gr * gr
            p -= lr * (mm / (1 - 0.9 ** t)) / (np.sqrt(vv / (1 - 0.999 ** t)) + 1e-8)
    model = LearnedModel(w.astype(np.float32), wc.astype(np.float32), float(params[2][0]))
    scores = np.array([model.score(p) for p in prompts])
    model.meta = {"dim": dim, "l2": l2, "epochs": epochs, "target": target, "n_train": n,
                  "trained_s": round(time.time() - started, 1),
                  "thresholds": [round(float(np.quantile(scores, q)), 4) for q in (0.4, 0.75)], **(meta or {})}
    return model


class LearnedRouter:
    """Router over a `LearnedModel`; options: {model: path to an .npz} (default: the shipped artefact).
    Default thresholds are the artefact's training-score quantiles: 40% simple, 35% medium, 25% complex."""

    name = "learned"

    def __init__(self, options: dict[str, Any] | None = None):
        self.model = LearnedModel.load((options or {}).get("model"))
        self.thresholds = tuple(self.model.meta.get("thresholds", (0.4, 0.6)))

    @classmethod
    def check(cls, route) -> None:
        if set(route.options) - {"model"}:
            raise ValueError("learned takes only `model` (path to a trained .npz)")
        LearnedModel.load(route.options.get("model"))  # fail at config time, not on the first request

    def score(self, prompt: Prompt) -> float:
        return round(self.model.score(prompt), 4)
