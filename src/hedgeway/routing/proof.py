"""Training a route's router from its labels, and the proof that gates it (`hedgeway router train --labels`).

Model: ridge regression of the gain (strong − weak quality, see `labelled`) on the features, solved in
the dual (n × n Gram matrix K = X Xᵀ + 1, eigendecomposed once per training fold); the penalty is picked
per fold from `LAMBDAS` by the closed-form leave-one-out error on that fold's training part only, so
no held-out label ever steers it. Numpy only: a linear smoother on ~1,000 labels needs nothing more.

Proof, every number measured on THIS label set:
  * repeated k-fold CV (`cv` folds × `repeats` shuffles): each prompt's out-of-fold score is the mean of
    its `repeats` held-out predictions; APGR of those scores with RouteLLM's protocol and a 95% bootstrap
    interval (`evaluate.evaluate_scores`: prompts resampled, 200 times);
  * random band: the same pipeline (folds, penalty selection, repeats) run on `permutations` copies of
    the labels shuffled across prompts (a prompt's strong and weak qualities move together): the APGRs
    random labels reach at this label count and gain distribution. band = mean ± 1.96 sd of those APGRs
    (the APGR of a random order is a mean over many prompts, so close to normal; an empirical 97.5th
    percentile would rest on the top 2–3 of 100 runs);
  * proven ⇔ the interval's lower bound lies above the band's top. Both the interval and the band are
    two-sided 95%, so chance alone passes only if the observed APGR sits about 2 × 1.96 sd above the
    random mean: a labels-without-signal set comes out proven far less than once in 10,000 (tested).
The shuffled copies reuse each fold's eigendecomposition (only the right-hand sides change), so the band
costs a few matrix products, not `permutations` more trainings. All of it runs on one BLAS thread
(threadpoolctl): the matrices are small, and OpenBLAS's threads spin against each other on a busy
machine (measured, 240 labels, 2 cores at load 11: 11.9 s with the default threads, 1.3 s with one).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from hedgeway.routing.evaluate import apgr, curve, evaluate_scores
from hedgeway.routing.labelled import FeatureSpec, Labelled, design, read_lines

LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MIN_LABELS = 20
MIN_PERMUTATIONS = 20
CURVE_SIZES = (50, 100, 200, 400, 800, 1600, 3200)


def _fold_ids(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def oof_scores(K: np.ndarray, Y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold ridge predictions (n × m) for each column of Y, the penalty chosen per fold and column
    by leave-one-out error on the training part."""
    out = np.zeros_like(Y)
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        S, U = np.linalg.eigh(K[np.ix_(tr, tr)])
        S = np.clip(S, 0.0, None)
        mean = Y[tr].mean(0)
        Z = U.T @ (Y[tr] - mean)
        U2, Kte = U * U, K[np.ix_(te, tr)] @ U
        best_err = np.full(Y.shape[1], np.inf)
        for lam in LAMBDAS:
            shrink = S / (S + lam)
            fitted = U @ (shrink[:, None] * Z)
            h = U2 @ shrink
            err = (((Y[tr] - mean - fitted) / (1.0 - h)[:, None]) ** 2).mean(0)
            better = err < best_err
            if better.any():
                best_err[better] = err[better]
                # without the fold's mean: it is anti-correlated with the held-out labels (it is the mean
                # of the others), so adding it back would rank whole folds against their own labels
                out[np.ix_(te, better)] = Kte @ (Z[:, better] / (S + lam)[:, None])
    return out


def _apgrs(scores: np.ndarray, s: np.ndarray, w: np.ndarray, perms: list[np.ndarray]) -> np.ndarray:
    vals = []
    for j, p in enumerate(perms):
        sp, wp = s[p], w[p]
        vals.append(apgr(curve(scores[:, j], sp, wp), float(sp.mean()), float(wp.mean())))
    return np.array(vals)


def cross_validate(K: np.ndarray, data: Labelled, cv: int, repeats: int, permutations: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold scores of the real labels, APGRs of the `permutations` shuffled copies)."""
    n = len(data.ids)
    rng = np.random.default_rng(seed)
    perms = [np.arange(n)] + [rng.permutation(n) for _ in range(permutations)]
    y = data.gain
    Y = np.stack([y[p] for p in perms], axis=1)
    total = np.zeros_like(Y)
    for _ in range(repeats):
        total += oof_scores(K, Y, _fold_ids(n, cv, rng))
    scores = total / repeats
    return scores[:, 0], _apgrs(scores[:, 1:], data.strong, data.weak, perms[1:])


def learning_curve(K: np.ndarray, data: Labelled, cv: int, seed: int) -> list[dict[str, Any]]:
    """APGR at growing label counts (random subsets, one CV repeat each; the last point is every label)."""
    n = len(data.ids)
    rng = np.random.default_rng(seed + 1)
    points = []
    for m in [m for m in CURVE_SIZES if m < n]:
        idx = rng.choice(n, m, replace=False)
        sub = Labelled([data.ids[i] for i in idx], [], [], data.strong[idx], data.weak[idx], [])
        scores, _ = cross_validate(K[np.ix_(idx, idx)], sub, cv, 1, 0, seed)
        s, w = sub.strong, sub.weak
        if s.mean() != w.mean():
            points.append({"n": m, "apgr": round(apgr(curve(scores, s, w), float(s.mean()), float(w.mean())), 4)})
    return points


def fit(X: np.ndarray, K: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The model on every label: (primal weights over X's columns, bias, penalty), the penalty by LOO."""
    S, U = np.linalg.eigh(K)
    S = np.clip(S, 0.0, None)
    mean = float(y.mean())
    z = U.T @ (y - mean)
    errs = []
    for lam in LAMBDAS:
        shrink = S / (S + lam)
        h = (U * U) @ shrink
        errs.append(float((((y - mean - U @ (shrink * z)) / (1.0 - h)) ** 2).mean()))
    lam = LAMBDAS[int(np.argmin(errs))]
    alpha = U @ (z / (S + lam))
    return (X.T @ alpha).astype(np.float32), mean + float(alpha.sum()), lam  # the +1 in K is a bias feature


def train_from_labels(lines: Iterable[dict], *, cv: int = 5, repeats: int = 3, permutations: int = 100,
                      seed: int = 0, embed: Callable[[list[str]], np.ndarray] | None = None,
                      curve_points: bool = True) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """Cross-validate, measure the random band, fit on every label. Returns (report, TrainedModel, oof):
    report has n, apgr, ci, random_band, proven, learning_curve (the `--json` object); oof is one
    {"id", "score"} per label, higher = needs the strong model. Raises ValueError on unusable labels."""
    started = time.time()
    data = read_lines(lines)
    n = len(data.ids)
    if n < max(MIN_LABELS, 2 * cv):
        raise ValueError(f"{n} labels: need at least {max(MIN_LABELS, 2 * cv)} for {cv}-fold cross-validation")
    if cv < 2 or repeats < 1:
        raise ValueError("--cv must be at least 2 and --repeats at least 1")
    if permutations < MIN_PERMUTATIONS:  # fewer shuffles: a band whose spread is itself a guess
        raise ValueError(f"--permutations must be at least {MIN_PERMUTATIONS} to measure the random band")
    if abs(data.strong.mean() - data.weak.mean()) < 1e-12:
        raise ValueError("the two models are equally good on average over these labels: APGR is undefined")
    X, spec = design(data, embed)
    with threadpool_limits(1, "blas"):  # see the module docstring
        report, model, scores = _prove(X.astype(np.float64), spec, data, cv, repeats, permutations, seed,
                                       curve_points)
    report["seconds"] = round(time.time() - started, 1)
    return report, model, [{"id": i, "score": round(float(s), 6)} for i, s in zip(data.ids, scores)]


def _prove(X64: np.ndarray, spec: FeatureSpec, data: Labelled, cv: int, repeats: int, permutations: int,
           seed: int, curve_points: bool) -> tuple[dict[str, Any], Any, np.ndarray]:
    from hedgeway.routing.trained import TrainedModel

    n = len(data.ids)
    K = X64 @ X64.T + 1.0
    scores, null = cross_validate(K, data, cv, repeats, permutations, seed)
    m = evaluate_scores(scores, data.strong, data.weak)
    ci = m["apgr_ci"] or [m["apgr"], m["apgr"]]
    mu, sd = (float(null.mean()), float(null.std(ddof=1))) if len(null) > 1 else (0.5, 0.0)
    band = [round(mu - 1.96 * sd, 4), round(mu + 1.96 * sd, 4)]
    proven = len(null) > 1 and m["apgr_ci"] is not None and ci[0] > band[1]  # no interval, no proof
    w, b, lam = fit(X64, K, data.gain)
    report = {"n": n, "apgr": m["apgr"], "ci": ci, "random_band": band, "proven": bool(proven),
              "learning_curve": (learning_curve(K, data, cv, seed) if curve_points else []) +
              [{"n": n, "apgr": m["apgr"]}],
              "cv": cv, "repeats": repeats, "permutations": permutations, "seed": seed,
              "strong": m["strong"], "weak": m["weak"], "cpt50": m["cpt50"], "cpt80": m["cpt80"],
              "features": list(spec.blocks), "penalty": lam}
    return report, TrainedModel.build(w, b, spec, X64 @ w.astype(np.float64) + b, report), scores


__all__ = ["FeatureSpec", "cross_validate", "fit", "learning_curve", "oof_scores", "train_from_labels"]
