"""Compare two stored runs and gate on regressions.

    report = compare(store.scores(base), store.scores(cand), base_tags, max_drop=0.03)
    report.failed  -> True when any scorer's candidate mean is lower than the baseline's by more than
                      max_drop (absolute, scores are in [0, 1])
    render_markdown(report)

Means are over the cases both runs scored (paired); a case one run failed to answer (an error) scores 0
in that run; unscored cases (None: e.g. unparseable judge replies) are counted per run and left out. 95%
confidence intervals are percentile bootstraps (2000 resamples, seeded: the same runs always give the
same report), for each mean and for the paired difference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 2000


@dataclass(slots=True)
class ScorerRow:
    scorer: str
    n: int  # paired cases
    base: float
    cand: float
    base_ci: tuple[float, float]
    cand_ci: tuple[float, float]
    delta_ci: tuple[float, float]
    base_unscored: int
    cand_unscored: int
    failed: bool

    @property
    def delta(self) -> float:
        return self.cand - self.base


@dataclass(slots=True)
class Report:
    baseline: str
    candidate: str
    max_drop: float
    rows: list[ScorerRow]
    tags: dict[str, dict[str, tuple[int, float, float]]]  # tag -> scorer -> (n, base mean, cand mean)
    worst: list[tuple[str, str, float, float]]  # (case_id, scorer, base, cand), largest drop first
    only_base: int = 0  # cases scored in the baseline only (e.g. the candidate errored)
    only_cand: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)


def bootstrap_ci(values: np.ndarray, seed: int = 0, resamples: int = RESAMPLES) -> tuple[float, float]:
    """Percentile 95% CI of the mean of `values` (seeded)."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _by_scorer(rows) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    unscored: dict[str, int] = defaultdict(int)
    for case_id, scorer, value, _detail in rows:
        if value is None:
            unscored[scorer] += 1
        else:
            scores[scorer][case_id] = float(value)
    return scores, unscored


def _zero_errors(mine: dict[str, dict[str, float]], other: dict[str, dict[str, float]], errored: set[str]) -> None:
    # A case this run failed to answer scores 0 wherever the other run scored it: a candidate that errors
    # must not pass the gate by leaving its failures out of the mean.
    for scorer, values in other.items():
        for case_id in errored & values.keys():
            mine.setdefault(scorer, {}).setdefault(case_id, 0.0)


def compare(base_rows, cand_rows, tags: dict[str, list[str]], *, baseline: str = "baseline",
            candidate: str = "candidate", max_drop: float = 0.03, worst: int = 10, seed: int = 0,
            errored: tuple[set[str], set[str]] = (set(), set())) -> Report:
    """`*_rows`: (case_id, scorer, score|None, detail) as `EvalStore.scores` returns; `tags`: case -> tags;
    `errored`: the case ids each run failed to answer (scored 0 where the other run has a score)."""
    base, base_un = _by_scorer(base_rows)
    cand, cand_un = _by_scorer(cand_rows)
    _zero_errors(base, cand, errored[0])
    _zero_errors(cand, base, errored[1])
    rows: list[ScorerRow] = []
    regressions: list[tuple[str, str, float, float]] = []
    per_tag: dict[str, dict[str, tuple[int, float, float]]] = defaultdict(dict)
    report = Report(baseline, candidate, max_drop, rows, per_tag, [])
    for scorer in sorted(set(base) | set(cand) | set(base_un) | set(cand_un)):
        common = sorted(set(base.get(scorer, {})) & set(cand.get(scorer, {})))
        report.only_base = max(report.only_base, len(set(base.get(scorer, {})) - set(common)))
        report.only_cand = max(report.only_cand, len(set(cand.get(scorer, {})) - set(common)))
        if not common:
            report.notes.append(f"{scorer}: no case scored in both runs (unscored: baseline "
                                f"{base_un.get(scorer, 0)}, candidate {cand_un.get(scorer, 0)})")
            continue
        b = np.array([base[scorer][c] for c in common])
        c = np.array([cand[scorer][c] for c in common])
        mb, mc = float(b.mean()), float(c.mean())
        rows.append(ScorerRow(scorer, len(common), mb, mc, bootstrap_ci(b, seed), bootstrap_ci(c, seed),
                              bootstrap_ci(c - b, seed), base_un.get(scorer, 0), cand_un.get(scorer, 0),
                              failed=(mb - mc) > max_drop + 1e-12))
        regressions += [(cid, scorer, bv, cv) for cid, bv, cv in zip(common, b, c) if cv < bv]
        groups: dict[str, list[int]] = defaultdict(list)
        for i, cid in enumerate(common):
            for tag in tags.get(cid, []) or ["(untagged)"]:
                groups[tag].append(i)
        for tag, idx in groups.items():
            per_tag[tag][scorer] = (len(idx), float(b[idx].mean()), float(c[idx].mean()))
    regressions.sort(key=lambda r: (r[3] - r[2], r[0], r[1]))
    report.worst = [(cid, s, float(bv), float(cv)) for cid, s, bv, cv in regressions[:worst]]
    return report


def _ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def render_markdown(r: Report) -> str:
    verdict = "FAIL" if r.failed else "PASS"
    out = [f"# Eval: `{r.candidate}` vs `{r.baseline}`", "",
           f"**{verdict}** (gate: no scorer's mean may drop by more than {r.max_drop:g})", "",
           "| scorer | n | baseline (95% CI) | candidate (95% CI) | Δ (95% CI) | unscored b/c | gate |",
           "|---|---|---|---|---|---|---|"]
    for row in r.rows:
        out.append(f"| {row.scorer} | {row.n} | {row.base:.3f} {_ci(row.base_ci)} | {row.cand:.3f} "
                   f"{_ci(row.cand_ci)} | {row.delta:+.3f} {_ci(row.delta_ci)} | {row.base_unscored}/"
                   f"{row.cand_unscored} | {'FAIL' if row.failed else 'ok'} |")
    if r.tags:
        scorers = [row.scorer for row in r.rows]
        out += ["", "## By tag", "", "| tag | " + " | ".join(scorers) + " |",
                "|---|" + "---|" * len(scorers)]
        for tag in sorted(r.tags):
            cells = []
            for s in scorers:
                n, b, c = r.tags[tag].get(s, (0, float("nan"), float("nan")))
                cells.append(f"{b:.3f} → {c:.3f} ({c - b:+.3f}, n={n})" if n else "—")
            out.append(f"| {tag} | " + " | ".join(cells) + " |")
    if r.worst:
        out += ["", "## Worst regressions", "", "| case | scorer | baseline | candidate | Δ |", "|---|---|---|---|---|"]
        out += [f"| {cid} | {s} | {b:.3f} | {c:.3f} | {c - b:+.3f} |" for cid, s, b, c in r.worst]
    if r.only_base or r.only_cand:
        out += ["", (f"Cases scored in one run only (left out of the means): baseline {r.only_base}, "
                     f"candidate {r.only_cand}.")]
    out += [f"- {note}" for note in r.notes]
    return "\n".join(out) + "\n"
