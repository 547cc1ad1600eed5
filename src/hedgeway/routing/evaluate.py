"""Scoring a binary (strong / weak) router the way RouteLLM does, plus the data format the CLI reads.

Data: a directory of `*.jsonl` files, one benchmark each; a line is
`{"id": ..., "prompt": str | messages, "strong": q, "weak": q}` (qualities on any scale: correctness
0/1, a 1–10 judge score…), optionally `"split": "train" | "test"`.

Protocol: the router scores every prompt; at 11 quantile thresholds the top k% of prompts (k = 0, 10, …,
100; ties broken by a fixed shuffle) go to the strong model, the rest to the weak one. Each point is
(% strong calls, mean quality). APGR = (area under that curve − weak × span) / ((strong − weak) × span):
0 = no better than always-weak, 1 = as good as always-strong all the way, random ≈ 0.5.
CPT(x%) = the % of strong calls at which the curve first recovers x% of the strong − weak gap
(linear interpolation between points). `apgr_ci` is a 95% bootstrap interval (prompts resampled with
replacement, 200 times): on a few hundred prompts it is ±0.04–0.1 wide, so compare routers with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import orjson

POINTS = 11


@dataclass(slots=True)
class Item:
    id: Any
    prompt: Any  # str or messages
    strong: float
    weak: float
    split: str | None = None


def load_dir(path: str | Path, split: str | None = None) -> dict[str, list[Item]]:
    """Benchmarks of a data directory (file stem → items), keeping only `split` when given."""
    out: dict[str, list[Item]] = {}
    files = sorted(Path(path).glob("*.jsonl"))
    if not files:
        raise ValueError(f"{path}: no *.jsonl files")
    for f in files:
        items = []
        for n, line in enumerate(f.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            try:
                item = Item(row.get("id", n), row["prompt"], float(row["strong"]), float(row["weak"]), row.get("split"))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{f}:{n}: need prompt, strong, weak") from None
            if split is None or item.split in (None, split):
                items.append(item)
        out[f.stem] = items
    return out


def curve(scores: Sequence[float], strong: Sequence[float], weak: Sequence[float],
          points: int = POINTS, seed: int = 0) -> list[tuple[float, float]]:
    s, w = np.asarray(strong, float), np.asarray(weak, float)
    n = len(s)
    tiebreak = np.random.default_rng(seed).random(n)
    order = np.lexsort((tiebreak, -np.asarray(scores, float)))  # highest score first
    out = []
    for frac in np.linspace(0, 1, points):
        k = int(round(frac * n))
        chosen = w.copy()
        chosen[order[:k]] = s[order[:k]]
        out.append((100.0 * k / n, float(chosen.mean())))
    return out


def apgr(points: list[tuple[float, float]], strong_q: float, weak_q: float) -> float:
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    span = x[-1] - x[0]
    return float((area - weak_q * span) / ((strong_q - weak_q) * span))


def cpt(points: list[tuple[float, float]], strong_q: float, weak_q: float, share: float) -> float | None:
    target = weak_q + share * (strong_q - weak_q)
    if points[0][1] >= target:
        return points[0][0]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y1 >= target:  # y0 < target here, so y1 > y0
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def evaluate(score: Callable[[Any], float], items: Sequence[Item]) -> dict[str, Any]:
    """Metrics of one router (`score(prompt) -> float`) on one benchmark."""
    return evaluate_scores([score(it.prompt) for it in items], [it.strong for it in items],
                           [it.weak for it in items])


def evaluate_scores(scores: Sequence[float], strong: Sequence[float], weak: Sequence[float],
                    resamples: int = 200) -> dict[str, Any]:
    """Metrics of precomputed router scores against per-prompt strong / weak qualities."""
    sc, s, w = np.asarray(scores, float), np.asarray(strong, float), np.asarray(weak, float)
    sq, wq = float(s.mean()), float(w.mean())
    pts = curve(sc, s, w)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(resamples):
        i = rng.integers(0, len(s), len(s))
        if s[i].mean() != w[i].mean():  # a resample with no gap has no APGR
            boot.append(apgr(curve(sc[i], s[i], w[i]), float(s[i].mean()), float(w[i].mean())))
    ci = [round(float(v), 3) for v in np.percentile(boot, [2.5, 97.5])] if boot else None
    lower = round(float(np.percentile(boot, 5)), 4) if boot else None  # one-sided 95% bound (proof.py)
    return {"n": len(s), "strong": round(sq, 4), "weak": round(wq, 4), "apgr": round(apgr(pts, sq, wq), 4),
            "apgr_ci": ci, "apgr_lower": lower, "cpt50": _r(cpt(pts, sq, wq, 0.5)), "cpt80": _r(cpt(pts, sq, wq, 0.8)),
            "curve": [(round(x, 1), round(y, 4)) for x, y in pts]}


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 1)


def table(results: dict[str, dict[str, dict]]) -> str:
    """results[benchmark][router] → a plain-text table."""
    bw = max([12, *(len(b) for b in results)])
    rw = max([10, *(len(r) for by in results.values() for r in by)])
    lines = [f"{'benchmark':<{bw}} {'router':<{rw}} {'n':>6} {'strong':>7} {'weak':>7} {'APGR':>6} "
             f"{'95% CI':>13} {'CPT50%':>7} {'CPT80%':>7}"]
    for bench, by_router in results.items():
        for router, m in by_router.items():
            c50 = "-" if m["cpt50"] is None else f"{m['cpt50']:.1f}"
            c80 = "-" if m["cpt80"] is None else f"{m['cpt80']:.1f}"
            ci = "-" if not m.get("apgr_ci") else "{:.3f}–{:.3f}".format(*m["apgr_ci"])
            lines.append(f"{bench:<{bw}} {router:<{rw}} {m['n']:>6} {m['strong']:>7.3f} {m['weak']:>7.3f} "
                         f"{m['apgr']:>6.3f} {ci:>13} {c50:>7} {c80:>7}")
    return "\n".join(lines)


def chart(results: dict[str, dict[str, dict]], path: str | Path) -> bool:
    """A PNG of every curve (one panel per benchmark); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (bench, by_router) in zip(axes[0], results.items()):
        for router, m in by_router.items():
            xs, ys = zip(*m["curve"])
            ax.plot(xs, ys, marker="o", ms=3, label=f"{router} (APGR {m['apgr']:.2f})")
        any_m = next(iter(by_router.values()))
        ax.axhline(any_m["strong"], ls="--", c="grey", lw=0.8)
        ax.axhline(any_m["weak"], ls=":", c="grey", lw=0.8)
        ax.set_title(bench)
        ax.set_xlabel("% calls to the strong model")
        ax.set_ylabel("quality")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
