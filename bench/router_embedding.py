"""Does an offline sentence embedding make a better learned router? (a benchmark, not a test)

    python bench/router_embedding.py [--data ../shared/data/router] [--vectors /tmp/hedgeway-router-emb.npz]

Embeds every RouteLLM prompt with the shipped MiniLM (the cache's embedder; needs the `semantic` extra;
~3–8 min on 2 cores, vectors kept in --vectors outside the repo so a rerun is quick), then scores each
benchmark by the same 5-fold cross-validation as `router_eval.py` (fold = crc32(id) % 5, each fold's
models trained on the other folds of all three benchmarks), for:

* `ngram`: the shipped learned router's recipe (hashed uni+bigrams + prompt cues, logistic regression);
* `embedding`: logistic regression over the 384-d MiniLM vector + the same standardised prompt cues;
* `knn-30`: the mean gain (strong − weak) of the 30 most similar training prompts (cosine);
* `ngram+embedding`: the mean of the two models' ranks.

APGR with a 95% bootstrap interval, as in `router_eval.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from router_eval import fold_ids, load_routellm, out_of_fold  # noqa: E402

from hedgeway.routing import evaluate as ev  # noqa: E402
from hedgeway.routing.features import CUES, cues, prompt_of  # noqa: E402

FOLDS = 5


def embed_all(data: dict[str, list[dict]], path: Path) -> dict[str, np.ndarray]:
    sizes = {k: len(rows) for k, rows in data.items()}
    if path.exists():
        with np.load(path) as z:
            if {k: len(z[k]) for k in z.files} == sizes:
                return {k: z[k] for k in z.files}
    from hedgeway.embedders import MiniLM

    m, out, started = MiniLM(threads=2), {}, time.time()
    for k, rows in data.items():  # one prompt per call: padding a batch to its longest prompt is slower
        out[k] = np.concatenate([m.embed_sync([prompt_of(r["prompt"]).text]) for r in rows])
        print(f"embedded {k}: {len(rows)} prompts, {time.time() - started:.0f} s", flush=True)
    np.savez(path, **out)
    return out


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, epochs: int = 300, lr: float = 0.01):
    """Full-batch Adam on the log loss; returns the linear scorer."""
    w, b = np.zeros(x.shape[1]), np.zeros(1)
    m = [np.zeros_like(w), np.zeros(1)]
    v = [np.zeros_like(w), np.zeros(1)]
    for t in range(1, epochs + 1):
        g = (1 / (1 + np.exp(-(x @ w + b[0]))) - y) / len(y)
        for p, gr, mm, vv in zip((w, b), (x.T @ g + l2 * w, np.array([g.sum()])), m, v):
            mm[:] = 0.9 * mm + 0.1 * gr
            vv[:] = 0.999 * vv + 0.001 * gr * gr
            p -= lr * (mm / (1 - 0.9 ** t)) / (np.sqrt(vv / (1 - 0.999 ** t)) + 1e-8)
    return lambda q: q @ w + b[0]


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r / len(x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/router"))
    ap.add_argument("--vectors", default="/tmp/hedgeway-router-emb.npz")
    args = ap.parse_args()
    data = load_routellm(Path(args.data) / "routellm")
    vecs = embed_all(data, Path(args.vectors))
    q = {}  # qualities scaled to [0, 1] per benchmark, as the learned router is trained
    for k, rows in data.items():
        sw = np.array([[r["strong"], r["weak"]] for r in rows])
        q[k] = (sw - sw.min()) / ((sw.max() - sw.min()) or 1)
    c = {k: np.array([[cues(prompt_of(r["prompt"]))[n] for n in CUES] for r in rows]) for k, rows in data.items()}
    allc = np.concatenate(list(c.values()))
    x = {k: np.hstack([vecs[k], (c[k] - allc.mean(0)) / (allc.std(0) + 1e-6)]) for k in data}
    fold = fold_ids(data, FOLDS)
    oof = {"ngram": out_of_fold(data, FOLDS), **{name: {k: np.zeros(len(rows)) for k, rows in data.items()}
                                                   for name in ("embedding", "knn-30")}}
    for f in range(FOLDS):
        tr = {k: fold[k] != f for k in data}
        emb = logistic(np.vstack([x[k][tr[k]] for k in data]),
                       np.concatenate([(q[k][:, 0] > q[k][:, 1])[tr[k]] for k in data]).astype(float))
        for k in data:
            te = np.flatnonzero(~tr[k])
            oof["embedding"][k][te] = emb(x[k][te])
            gain = (q[k][:, 0] - q[k][:, 1])[tr[k]]
            sims = vecs[k][te] @ vecs[k][tr[k]].T
            near = np.argpartition(-sims, min(30, sims.shape[1] - 1), axis=1)[:, :30]
            oof["knn-30"][k][te] = gain[near].mean(1)
    results = {}
    for k, rows in data.items():
        s, w = [r["strong"] for r in rows], [r["weak"] for r in rows]
        results[f"{k} (cv)"] = {name: ev.evaluate_scores(oof[name][k], s, w) for name in oof}
        results[f"{k} (cv)"]["ngram+embedding"] = ev.evaluate_scores(
            _rank(oof["ngram"][k]) + _rank(oof["embedding"][k]), s, w)
    print(ev.table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
