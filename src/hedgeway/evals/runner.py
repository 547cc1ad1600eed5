"""The eval runner: send every case of a golden set through a gateway, score the answers, store them.

    summary = await run_cases(cases, spec, client, store)

`client` is an `openai.AsyncOpenAI` pointed at a Hedgeway gateway, so routing, fallbacks, caching (unless
`spec.no_cache`) and pricing apply exactly as for users; every case is a ledger row of its own. At most
`spec.concurrency` cases are in flight. Each finished case is stored at once (result + scores, one
transaction), so an interrupted run resumes where it stopped: cases already stored for the run without an
error are skipped; failed ones are retried.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from hedgeway.errors import ConfigError
from hedgeway.evals.dataset import Case
from hedgeway.evals.scorers import Env, check, score_case
from hedgeway.evals.store import EvalStore, Result


@dataclass(slots=True)
class RunSpec:
    name: str
    model: str
    scorers: list[str] = field(default_factory=lambda: ["exact", "rouge_l"])
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # scorer -> run-wide settings
    concurrency: int = 8
    no_cache: bool = False
    judge_model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # extra request fields (temperature, max_tokens, …)


@dataclass(slots=True)
class Summary:
    total: int
    skipped: int  # already stored for this run (resume)
    answered: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        sent = self.answered + self.errors
        return sent / self.seconds if self.seconds > 0 else 0.0


def _text(message: Any) -> str:
    if message.content is not None:
        return message.content
    calls = [c.model_dump() for c in (message.tool_calls or [])]
    return orjson.dumps(calls).decode() if calls else ""


def _cost(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value else None
    except InvalidOperation:
        return None


async def run_one(case: Case, spec: RunSpec, client: Any, env: Env) -> tuple[Result, list]:
    """Send one case; never raises for an upstream/gateway failure (it becomes the result's error)."""
    import openai

    body: dict[str, Any] = dict(spec.params)
    if spec.no_cache:
        body["cache"] = {"no_cache": True}  # Hedgeway's per-request cache control; never sent upstream
    result = Result(spec.name, case.id, spec.model, None, tags=list(case.tags))
    t0 = time.perf_counter()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=spec.model, messages=case.chat_messages(), extra_body=body or None)
        completion = raw.parse()
    except openai.APIStatusError as exc:
        result.latency_ms = (time.perf_counter() - t0) * 1000
        result.error = f"HTTP {exc.status_code}: {exc.message}"[:500]
        result.request_id = exc.response.headers.get("x-hedgeway-request-id")
        return result, []
    except openai.APIError as exc:  # connection errors, timeouts
        result.latency_ms = (time.perf_counter() - t0) * 1000
        result.error = f"{type(exc).__name__}: {exc}"[:500]
        return result, []
    result.latency_ms = (time.perf_counter() - t0) * 1000
    headers = raw.headers
    result.request_id = headers.get("x-hedgeway-request-id")
    result.deployment = headers.get("x-hedgeway-deployment")
    result.cache = headers.get("x-hedgeway-cache")
    result.cost = _cost(headers.get("x-hedgeway-cost"))  # the ledger's row is preferred when reading
    if completion.usage is not None:
        result.prompt_tokens = completion.usage.prompt_tokens or 0
        result.completion_tokens = completion.usage.completion_tokens or 0
    result.output = _text(completion.choices[0].message) if completion.choices else ""
    scores = await score_case(result.output, case, spec.scorers, spec.settings, env)
    return result, scores


async def run_cases(cases: list[Case], spec: RunSpec, client: Any, store: EvalStore,
                    progress: bool = True) -> Summary:
    """Run every case not yet stored for `spec.name`. Raises ConfigError for a scorer misconfiguration
    (unknown scorer, judge without a model, bad regex, no embedder); cases finished before it stay stored."""
    check(spec.scorers)
    judged = "llm_judge" in spec.scorers or any("llm_judge" in c.scorers for c in cases)
    if judged and not spec.judge_model and "model" not in spec.settings.get("llm_judge", {}) and any(
            "model" not in c.scorers.get("llm_judge", {}) for c in cases):
        raise ConfigError("scorers.llm_judge.model", "the judge needs a model: --judge-model NAME")
    done = await asyncio.to_thread(store.done, spec.name)
    todo = [c for c in cases if c.id not in done]
    env = Env(client, spec.judge_model, tuple(c.reference for c in cases if c.reference is not None))
    sem = asyncio.Semaphore(max(1, spec.concurrency))
    counts = {"answered": 0, "errors": 0}
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"eval {spec.name}", unit="case", disable=not progress)

    async def one(case: Case) -> None:
        async with sem:
            result, scores = await run_one(case, spec, client, env)
        await asyncio.to_thread(store.save, result, scores)
        counts["errors" if result.error else "answered"] += 1
        bar.update(1)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(c) for c in todo))
    finally:
        bar.close()
    return Summary(len(cases), len(cases) - len(todo), counts["answered"], counts["errors"],
                   time.perf_counter() - t0)
