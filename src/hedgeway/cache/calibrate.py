"""Threshold calibration on labelled pairs: load, embed, sweep.

Pair files (format from the name/extension):
    *.jsonl                         {"a", "b", "label"} per line (label 1 = same answer may be reused)
    QQP *.json                      [{"text_a", "text_b", "label"}, …] (../shared/data/cache/qqp)
    STS-B *.tsv (header "sentence1 … score")  label = score ≥ `sts_positive` (default 4.0 of 5)
    MRPC *.tsv (header "Quality …")  label = Quality
`sweep` returns, per threshold, precision (of pairs at/above it, how many are labelled duplicates) and
recall (of labelled duplicates, how many are at/above it) — a cache hit at that threshold is exactly
"similarity ≥ threshold", so these are the hit precision and hit recall on such pairs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def load_pairs(path: str, sts_positive: float = 4.0) -> list[tuple[str, str, int]]:
    p = Path(path)
    if p.suffix == ".jsonl":
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        return [(r["a"], r["b"], int(r["label"])) for r in rows]
    if p.suffix == ".json":
        return [(r["text_a"], r["text_b"], int(r["label"])) for r in json.loads(p.read_text())]
    if p.suffix == ".tsv":
        with p.open(encoding="utf-8-sig") as f:
            lines = [line.rstrip("\n").split("\t") for line in f]
        head = [h.strip() for h in lines[0]]
        if "sentence1" in head:
            i, j, s = head.index("sentence1"), head.index("sentence2"), head.index("score")
            return [(r[i], r[j], int(float(r[s]) >= sts_positive)) for r in lines[1:] if len(r) > s]
        if head and head[0] == "Quality":
            return [(r[3], r[4], int(r[0])) for r in lines[1:] if len(r) >= 5]
    raise SystemExit(f"{path}: not a known pairs format (.jsonl {{a,b,label}}, QQP .json, STS-B/MRPC .tsv)")


def sample(pairs: list, limit: int | None, seed: int = 0) -> list:
    if limit is None or limit >= len(pairs):
        return pairs
    return random.Random(seed).sample(pairs, limit)


def similarities(embed_sync, pairs: list[tuple[str, str, int]], batch: int = 16) -> np.ndarray:
    texts = sorted({t for a, b, _ in pairs for t in (a, b)}, key=len)  # similar lengths pad less
    index = {t: i for i, t in enumerate(texts)}
    vecs = np.concatenate([embed_sync(texts[i:i + batch]) for i in range(0, len(texts), batch)])
    a = vecs[[index[p[0]] for p in pairs]]
    b = vecs[[index[p[1]] for p in pairs]]
    return (a * b).sum(axis=1)


@dataclass(frozen=True)
class Point:
    threshold: float
    precision: float
    recall: float
    hits: int


def sweep(sims: np.ndarray, labels: np.ndarray, thresholds=None) -> list[Point]:
    if thresholds is None:
        thresholds = np.round(np.arange(0.50, 1.0, 0.01), 2)
    positives = max(int(labels.sum()), 1)
    out = []
    for t in thresholds:
        hit = sims >= t
        n = int(hit.sum())
        tp = int((hit & (labels == 1)).sum())
        out.append(Point(float(t), tp / n if n else 1.0, tp / positives, n))
    return out


def choose(points: list[Point], target: float, min_hits: int = 10) -> tuple[Point | None, Point]:
    """(the lowest threshold reaching `target` precision on ≥ min_hits hits — the most recall there —
    or None when no threshold does, and the best-precision point with ≥ min_hits hits)."""
    supported = [p for p in points if p.hits >= min_hits] or points
    best = max(supported, key=lambda p: (p.precision, p.recall))
    ok = [p for p in supported if p.precision >= target]
    return (min(ok, key=lambda p: p.threshold) if ok else None), best


def plot(points: list[Point], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p.recall for p in points], [p.precision for p in points], marker=".")
    for p in points[::5]:
        ax.annotate(f"{p.threshold:.2f}", (p.recall, p.precision), fontsize=7)
    ax.set_xlabel("recall (hit rate on duplicates)")
    ax.set_ylabel("precision (hits that are duplicates)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
