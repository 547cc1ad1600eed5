"""Label lines → the arrays a per-route router is trained on, and the features it reads.

A LABEL LINE (the file format of `hedgeway router train --labels`, and what the ledger's label store
returns) is a JSON object

    {"id": str, "prompt": str | messages  (or "messages": [...])  (or "embedding": [384 floats]),
     "strong": float, "weak": float}                 # each model's quality, any one scale per file
    {"id": ..., "prompt": ..., "strong_wins": w}     # instead: 0 | 1, or a judged preference in [0, 1]

With `strong_wins`, the quality of the strong model is w and the weak model's is 1 − w (a tie, 0.5,
says neither model is better). `embedding` is the L2-normalised MiniLM vector of the prompt's last user
turn, as `hedgeway.embedders` computes it for the semantic cache; a line without one is embedded here.

Features (`FeatureSpec`): blocks whose direction the trainer learns, none hand-set:
  * `embedding`: the MiniLM vector (384 floats, unit length) — at run time the one the cache computed;
  * `ngrams`: signed hashed word unigrams + bigrams (`learned.sparse_features`, unit length);
  * `cues`: the prompt cues (`features.cues`), standardised by the training set's mean and spread.
`ngrams` and `cues` need the prompt's text: a set with any embedding-only line is trained on
`embedding` alone. Each block weighs about 1 in the dot product (unit length, cues scaled by 1/√11).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from hedgeway.cache.keys import last_user_index, user_text
from hedgeway.routing.features import CUES, Prompt, prompt_of
from hedgeway.routing.learned import dense_features, sparse_features

EMBED_DIM = 384
NGRAM_DIM = 1 << 12


@dataclass
class Labelled:
    ids: list[Any]
    prompts: list[Prompt | None]  # None: embedding-only line
    texts: list[str | None]  # what is embedded: the last user turn's text
    strong: np.ndarray  # quality of the strong model, per line
    weak: np.ndarray
    embeddings: list[np.ndarray | None]

    @property
    def gain(self) -> np.ndarray:
        """strong − weak on [−1, 1] (the file's quality range scaled to [0, 1]): what the router predicts."""
        lo = min(self.strong.min(), self.weak.min())
        span = (max(self.strong.max(), self.weak.max()) - lo) or 1.0
        return (self.strong - self.weak) / span


def _quality(row: dict, where: str) -> tuple[float, float]:
    if "strong_wins" in row:
        w = float(row["strong_wins"])
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"{where}: strong_wins must be in [0, 1]")
        return w, 1.0 - w
    return float(row["strong"]), float(row["weak"])


def read_lines(lines: Iterable[dict]) -> Labelled:
    """Validate label lines (raises ValueError naming the line) into arrays."""
    ids, prompts, texts, strong, weak, embs = [], [], [], [], [], []
    for n, row in enumerate(lines, 1):
        where = f"label line {n}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: not a JSON object")
        source = row.get("prompt", row.get("messages"))
        emb = row.get("embedding")
        if source is None and emb is None:
            raise ValueError(f"{where}: needs prompt, messages or embedding")
        try:
            s, w = _quality(row, where)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: needs strong and weak, or strong_wins ({exc})") from None
        if not (math.isfinite(s) and math.isfinite(w)):
            raise ValueError(f"{where}: qualities must be finite numbers")
        if emb is not None:
            emb = np.asarray(emb, np.float32)
            if emb.shape != (EMBED_DIM,):
                raise ValueError(f"{where}: embedding must have {EMBED_DIM} floats")
        ids.append(row.get("id", n))
        prompts.append(None if source is None else prompt_of(source))
        texts.append(None if source is None else embed_text(source))
        strong.append(s)
        weak.append(w)
        embs.append(emb)
    return Labelled(ids, prompts, texts, np.array(strong, float), np.array(weak, float), embs)


def embed_text(source: Any) -> str:
    """What the router embeds: the last user turn's text (the semantic cache's text for the request)."""
    if isinstance(source, str):
        return source
    messages = source.get("messages") if isinstance(source, dict) else source
    messages = [m for m in messages or () if isinstance(m, dict)]
    i = last_user_index(messages)
    return (user_text(messages[i]) or "") if i >= 0 else ""


_OFFLINE: list[Any] = []  # one MiniLM on every core, for offline training and scoring (loaded on first use)


def minilm_embed(texts: list[str]) -> np.ndarray:
    """The semantic cache's MiniLM vectors (same model, tokenizer and pooling) of model-length prefixes,
    in batches of 32, on every core: for offline training and scoring, never on the request path."""
    from hedgeway.embedders import MiniLM

    if not _OFFLINE:
        _OFFLINE.append(MiniLM(threads=os.cpu_count() or 1))
    model = _OFFLINE[0]
    if not texts:
        return np.zeros((0, EMBED_DIM), np.float32)
    return np.concatenate([model.embed_sync(texts[i:i + 32]) for i in range(0, len(texts), 32)])


@dataclass
class FeatureSpec:
    blocks: tuple[str, ...]
    ngram_dim: int = NGRAM_DIM
    cue_mean: list[float] = field(default_factory=lambda: [0.0] * len(CUES))
    cue_std: list[float] = field(default_factory=lambda: [1.0] * len(CUES))

    def as_dict(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "embedding": "minilm", "embed_dim": EMBED_DIM,
                "ngram_dim": self.ngram_dim, "cues": list(CUES), "cue_mean": self.cue_mean, "cue_std": self.cue_std}

    @classmethod
    def of(cls, d: dict[str, Any]) -> "FeatureSpec":
        if d.get("cues") != list(CUES) or d.get("embed_dim") != EMBED_DIM:
            raise ValueError("feature spec does not match this Hedgeway's cues or embedding")
        return cls(tuple(d["blocks"]), int(d["ngram_dim"]), list(d["cue_mean"]), list(d["cue_std"]))

    @property
    def width(self) -> int:
        return sum({"embedding": EMBED_DIM, "ngrams": self.ngram_dim, "cues": len(CUES)}[b] for b in self.blocks)

    def row(self, prompt: Prompt | None, embedding: np.ndarray) -> np.ndarray:
        """One prompt's feature vector (float32, `width` long)."""
        parts = []
        for b in self.blocks:
            if b == "embedding":
                parts.append(np.asarray(embedding, np.float32))
            elif b == "ngrams":
                v = np.zeros(self.ngram_dim, np.float32)
                idx, val = sparse_features(prompt, self.ngram_dim)
                v[idx] = val
                parts.append(v)
            else:
                c = (dense_features(prompt) - np.asarray(self.cue_mean)) / np.asarray(self.cue_std)
                parts.append((c / np.sqrt(len(CUES))).astype(np.float32))
        return np.concatenate(parts)


def design(data: Labelled, embed: Callable[[list[str]], np.ndarray] | None = None) -> tuple[np.ndarray, FeatureSpec]:
    """The feature matrix of a label set (n × width) and its spec; embeds lines that carry no embedding."""
    missing = [i for i, e in enumerate(data.embeddings) if e is None]
    if missing:
        vecs = (embed or minilm_embed)([data.texts[i] or "" for i in missing])
        for i, v in zip(missing, vecs):
            data.embeddings[i] = np.asarray(v, np.float32)
    has_text = all(p is not None for p in data.prompts)
    spec = FeatureSpec(("embedding", "ngrams", "cues") if has_text else ("embedding",))
    if has_text:
        c = np.stack([dense_features(p) for p in data.prompts]).astype(float)
        spec.cue_mean = [round(float(v), 6) for v in c.mean(0)]
        spec.cue_std = [round(float(v), 6) or 1.0 for v in c.std(0)]
    X = np.stack([spec.row(p, e) for p, e in zip(data.prompts, data.embeddings)]) if data.ids else \
        np.zeros((0, spec.width), np.float32)
    return X, spec

