"""Shadow traffic: a sampled share of a model's live requests is sent again to a candidate model after the
user has the answer, and the two answers are compared. The user's response is never delayed, changed or
failed by it: the copy starts once the response is complete, is bounded (`max_in_flight`; beyond it a copy
is skipped and counted, never queued), and its failure is only recorded.

    routing:
      shadows:
        - {model: gpt-4o, candidate: llama-local, share: 0.05, embedder: minilm, max_in_flight: 8}

`model` matches the name the client asked for or, for a routed name, the tier's model (`route.model`).
Each copy is billed as its own ledger row (`endpoint: shadow`, the candidate's model name and cost), and
leaves one `shadow_results` row (migration 010): both deployments, latencies, costs, ROUGE-L F1 of the
two answers, their embedding cosine (`embedder`, from hedgeway.embedders; "none": ROUGE-L only), the
candidate's error if it failed, and both answers unless `keep_answers: false`.

    shadows = Shadows(config.routing.shadows, ledger_url)
    spec = shadows.pick(model, route)               # the ShadowIn to copy this request to, or None
    await shadows.compare(spec, request_id, primary, shadow)   # then shadows.release(spec)
    shadows.report(since) -> list[dict]             # per (model, candidate): `hedgeway shadow report`
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import Field

from hedgeway.canary.quality import answer_text, rouge_l
from hedgeway.strict import Strict

log = logging.getLogger("hedgeway.shadow")
MAX_ANSWER_CHARS = 4000  # what a report needs to show a disagreement, not a transcript store


class ShadowIn(Strict):
    model: str
    candidate: str
    share: float = Field(0.05, gt=0, le=1)
    max_in_flight: int = Field(8, ge=1)
    embedder: Literal["minilm", "none"] = "minilm"  # offline only: a shadow must not call a third model
    keep_answers: bool = True


def check_shadows(specs: list[ShadowIn], models: Any, routed: set[str], rename=lambda p: p) -> None:
    """Cross-validate `routing.shadows` against the config's names; raises ConfigError naming the path."""
    import importlib.util

    from hedgeway.errors import ConfigError

    for i, spec in enumerate(specs):
        path = f"routing.shadows[{i}]"
        if spec.model not in models and spec.model not in routed:
            raise ConfigError(rename(f"{path}.model"), f"unknown model name {spec.model!r}")
        if spec.candidate not in models:
            raise ConfigError(rename(f"{path}.candidate"), f"unknown model name {spec.candidate!r}")
        if spec.embedder == "minilm" and importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError(rename(f"{path}.embedder"), "the minilm embedder needs `pip install "
                                                          "hedgeway[semantic]`; or set embedder: none (ROUGE-L only)")


@dataclass(frozen=True, slots=True)
class Answer:
    """One side of the comparison. `body` is the chat.completion (None when the call failed)."""

    deployment: str | None
    latency_ms: float
    cost: Decimal
    body: bytes | None
    error: str | None = None


class Shadows:
    def __init__(self, specs: list[ShadowIn], ledger_url: str):
        self.specs = specs
        self.in_flight = {id(s): 0 for s in specs}
        self.counts: dict[tuple[str, str, str], int] = {}
        self.agreement: dict[tuple[str, str], list[float]] = {}  # [sum, n] of ROUGE-L per pair
        self._embedders: dict[str, Any] = {}
        self._db = None
        self._url = ledger_url

    def pick(self, model: str, route: dict[str, Any] | None) -> ShadowIn | None:
        """The shadow this request is copied to (sampled by `share`), holding one of its in-flight slots."""
        tier_model = route.get("model") if route else None
        for spec in self.specs:
            if (spec.model == model or spec.model == tier_model) and random.random() < spec.share:
                if self.in_flight[id(spec)] >= spec.max_in_flight:
                    self._count(spec, "skipped")
                    return None
                self.in_flight[id(spec)] += 1
                return spec
        return None

    def release(self, spec: ShadowIn) -> None:
        self.in_flight[id(spec)] -= 1

    async def compare(self, spec: ShadowIn, request_id: str, primary: Answer, shadow: Answer) -> None:
        """Score the two answers and store the comparison (the database write runs off the event loop).
        Never raises: a comparison that cannot be stored is logged and counted (`unstored`)."""
        try:
            a = answer_text(primary.body or b"")
            b = answer_text(shadow.body) if shadow.body is not None else None
            rouge = similarity = None
            if b is not None:
                rouge = rouge_l(a, b)
                if spec.embedder != "none":
                    vecs = await self._embedder(spec.embedder).embed([a, b])
                    similarity = max(0.0, min(1.0, float(vecs[0] @ vecs[1])))
            keep = (lambda t: t[:MAX_ANSWER_CHARS]) if spec.keep_answers else (lambda t: None)
            row = (request_id, time.time(), spec.model, spec.candidate, primary.deployment, shadow.deployment,
                   primary.latency_ms, shadow.latency_ms, str(primary.cost), str(shadow.cost), rouge, similarity,
                   shadow.error, keep(a), keep(b) if b is not None else None)
            await asyncio.to_thread(self._write, row)
        except Exception as exc:  # noqa: BLE001 - a shadow must never surface; the count and log say it failed
            log.warning("shadow %s -> %s: comparison for %s not stored (%s)", spec.model, spec.candidate,
                        request_id, type(exc).__name__)
            self._count(spec, "unstored")
            return
        if rouge is not None:
            pair = self.agreement.setdefault((spec.model, spec.candidate), [0.0, 0])
            pair[0] += rouge
            pair[1] += 1
        self._count(spec, "error" if shadow.error else "compared")

    def _embedder(self, name: str):
        if name not in self._embedders:
            from hedgeway.embedders import EMBEDDERS  # onnxruntime loads only when a shadow asks for it

            self._embedders[name] = EMBEDDERS[name](SimpleNamespace(embedder=name, embedding_model=None), None)
        return self._embedders[name]

    def _database(self):
        if self._db is None:
            from hedgeway.keys.db import open_db

            self._db = open_db(self._url)
            self._db.migrate()  # idempotent; the report may be the first to open a fresh database
        return self._db

    def _write(self, row: tuple) -> None:
        self._database().write(lambda q: q(
            "INSERT INTO shadow_results (request_id, ts, model, candidate, primary_deployment, shadow_deployment, "
            "primary_latency_ms, shadow_latency_ms, primary_cost, shadow_cost, rouge_l, similarity, error, "
            "primary_answer, shadow_answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row))

    def _count(self, spec: ShadowIn, outcome: str) -> None:
        key = (spec.model, spec.candidate, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def report(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Per (model, candidate) since `since`: copies, candidate errors, mean agreement, latency p50 of
        each side, and what each side cost for the same requests."""
        rows = self._database().read(lambda q: q(
            "SELECT model, candidate, primary_latency_ms, shadow_latency_ms, primary_cost, shadow_cost, rouge_l, "
            "similarity, error FROM shadow_results WHERE ts >= ? ORDER BY model, candidate", (since,)).fetchall())
        groups: dict[tuple[str, str], list[tuple]] = {}
        for r in rows:
            groups.setdefault((r[0], r[1]), []).append(r)
        out = []
        for (model, candidate), rs in groups.items():
            ok = [r for r in rs if r[8] is None]
            sims = [r[7] for r in ok if r[7] is not None]
            out.append({
                "model": model, "candidate": candidate, "requests": len(rs), "errors": len(rs) - len(ok),
                "rouge_l": statistics.fmean(r[6] for r in ok) if ok else None,
                "similarity": statistics.fmean(sims) if sims else None,
                "primary_p50_ms": statistics.median(r[2] for r in rs),
                "shadow_p50_ms": statistics.median(r[3] for r in ok) if ok else None,
                "primary_cost": sum((Decimal(r[4]) for r in rs), Decimal(0)),
                "shadow_cost": sum((Decimal(r[5]) for r in rs), Decimal(0))})
        return out

    def render_metrics(self) -> str:
        lines = ["# HELP hedgeway_shadow_requests_total Shadow copies by outcome (compared, error, skipped, unstored).",
                 "# TYPE hedgeway_shadow_requests_total counter"]
        lines += [f'hedgeway_shadow_requests_total{{model="{m}",candidate="{c}",outcome="{o}"}} {n}'
                  for (m, c, o), n in sorted(self.counts.items())]
        lines += ["# HELP hedgeway_shadow_agreement_mean Mean ROUGE-L F1 of candidate and primary answers.",
                  "# TYPE hedgeway_shadow_agreement_mean gauge"]
        lines += [f'hedgeway_shadow_agreement_mean{{model="{m}",candidate="{c}"}} {s / n:.4f}'
                  for (m, c), (s, n) in sorted(self.agreement.items()) if n]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
