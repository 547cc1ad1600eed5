"""Labels from a route's own traffic: after the user has the answer, the other tier answers the same
request and a judge model grades the pair (hedgeway.routing.judge), within a daily budget.

    router:
      routes:
        - name: auto
          tiers: {simple: llama-local, complex: gpt-4o}
          learn: {share: 0.02, judge: gpt-4o, daily_budget: 5}   # USD per UTC day

The pair is the route's cheapest tier (weak) and its most capable one (strong); a request answered by
any other model (a middle tier, a fallback, a canary's candidate, the cache) is not sampled. A sampled
request costs three labelling calls, each its own ledger row that no user budget is charged for
(key_id `hedgeway:learn`, `route` `{"learn": NAME}`): the other tier's answer (`endpoint: shadow`) and
the judge, once per order (`endpoint: judge`). Before each call the route's spend of the UTC day is
checked against `daily_budget`: the ledger's sum, re-read every REFRESH seconds (so a restart and the other
replicas count too), plus this process's calls since (calls already in flight may end above it). The
other tier's call must be answered by that tier's model: if it falls back to another model, no label.
The user's response is never delayed, changed or failed: the work starts after it, runs as a background
task (at most `max_in_flight` per route; beyond, the request is skipped and counted) and every failure is
only counted.

Every routed name with two models (with or without `learn`) takes application feedback
(hedgeway.http.feedback): the last RECENT requests on them are remembered (a reference to the parsed
body, no copy) so a feedback label can carry the prompt's features.

    learner = Learner(config, again, background)   # again: Gateway._again; background: Gateway._background
    learner.after(ctx, req, answer, deployment)    # the user's answer: maybe label it (O(1), never raises)
    learner.recent(request_id)                     # what /v1/feedback needs of a recent request, or None
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Awaitable, Callable

import orjson

from hedgeway.cache.stream import assemble
from hedgeway.canary.quality import answer_text
from hedgeway.errors import HedgewayError
from hedgeway.routing.config import TIERS, LearnIn
from hedgeway.routing.judge import combine, judge_messages, parse_verdict
from hedgeway.routing.label_store import Label, LabelStore, encode_embedding, features, prompt_text
from hedgeway.types import ChatRequest, Principal

log = logging.getLogger("hedgeway.learn")
LEARN = Principal(key_id="hedgeway:learn")  # labelling calls: never a user's, never in a user's budget
RECENT = 2048  # requests remembered for feedback (a reference to the body: no copy, no work)
DAY = 86400
REFRESH = 30.0  # seconds between reads of the day's labelling spend from the ledger
UNFLUSHED = 2.0  # own calls this recent may not be in the ledger yet: counted on top of it (never less)


@dataclass(frozen=True, slots=True)
class Pair:
    route: str
    strong: str  # model names
    weak: str
    spec: LearnIn | None  # None: no sampling, feedback only
    tag: str  # the start of the labelling rows' `route` JSON

    def tier(self, model: str) -> str | None:
        return "strong" if model == self.strong else "weak" if model == self.weak else None


@dataclass(slots=True)
class Seen:  # not frozen: made on the request path, where a frozen dataclass's __init__ costs ~3x
    """A recent request on a learning route, for /v1/feedback."""

    key_id: str
    pair: Pair
    served: str | None
    body: dict[str, Any]


@dataclass(slots=True)
class Spend:
    """A route's labelling spend of one UTC day: the ledger's sum when read, plus this process's calls."""

    day: int
    ledger: Decimal
    read_at: float
    own: list[tuple[float, Decimal]]  # (when, USD) of this process's calls since the read

    def total(self) -> Decimal:
        return self.ledger + sum((c for _, c in self.own), Decimal(0))


@dataclass(frozen=True, slots=True)
class _Caller:  # what Gateway._again reads of a request context
    request_id: str
    principal: Principal = LEARN
    embedding: Any = None  # the calls go to plain model names: no trained router reads a vector


class Learner:
    def __init__(self, config: Any, again: Callable[..., Awaitable], background: Callable[[Any], None],
                 clock: Callable[[], float] = time.time):
        self.pairs: dict[str, Pair] = {}
        for r in config.router.routes:  # every route with two models takes feedback; `learn` ones sample
            names = [r.tiers[t] for t in TIERS if t in r.tiers]
            if names[0] != names[-1]:
                self.pairs[r.name] = Pair(r.name, names[-1], names[0], r.learn,
                                          orjson.dumps({"learn": r.name}).decode()[:-1])
        self.log_prompts = config.ledger.log_prompts
        self.model_of = {dep_id: dep.model_name for dep_id, dep in config.deployments.items()}
        self.again, self.background, self.clock = again, background, clock
        self.url = config.ledger.url
        self._store: LabelStore | None = None
        self._opening = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.spent: dict[str, Spend] = {}
        self._loading = asyncio.Lock()
        self._recent: OrderedDict[str, Seen] = OrderedDict()
        self._embedder: Any = None

    # --- on the request path: O(1), never raises ---
    def after(self, ctx: Any, req: ChatRequest, answer: bytes | list[bytes], deployment: str) -> None:
        """The user has (or is about to have) `answer` (a chat.completion body, or a stream's SSE chunks),
        answered by `deployment`: remember the request for feedback and, for a sampled share, schedule
        its label."""
        pair = self.pairs.get(req.model)
        if pair is None or ctx.route is None:
            return
        served = pair.tier(self.model_of.get(deployment, ""))
        self._recent[ctx.request_id] = Seen(ctx.principal.key_id, pair, served, req.body)
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        if served is None or pair.spec is None or random.random() >= pair.spec.share:
            return
        if self.in_flight[pair.route] >= pair.spec.max_in_flight:
            self.counts[(pair.route, "skipped")] += 1
            return
        self.in_flight[pair.route] += 1
        self.background(self._label(pair, ctx.request_id, ctx.principal.key_id, req, served, answer))

    def recent(self, request_id: str) -> Seen | None:
        return self._recent.get(request_id)

    # --- after the response ---
    def store(self) -> LabelStore:
        """The label store (opened on first use; call off the event loop)."""
        with self._opening:
            if self._store is None:
                self._store = LabelStore(self.url)
        return self._store

    def _stale(self, route: str, now: float) -> bool:
        s = self.spent.get(route)
        return s is None or s.day != int(now // DAY) or now - s.read_at >= REFRESH

    async def room(self, pair: Pair) -> bool:
        """Whether the route's labelling spend of the current UTC day is below its daily budget."""
        now = self.clock()
        if self._stale(pair.route, now):
            async with self._loading:
                if self._stale(pair.route, now):
                    day = int(now // DAY)
                    ledger = await asyncio.to_thread(lambda: self.store().spent(pair.tag, day * DAY))
                    old = self.spent.get(pair.route)
                    own = [(t, c) for t, c in old.own if t > now - UNFLUSHED] if old and old.day == day else []
                    self.spent[pair.route] = Spend(day, ledger, now, own)
        return self.spent[pair.route].total() < pair.spec.daily_budget

    async def _call(self, pair: Pair, rid: str, endpoint: str, model: str, req: ChatRequest) -> Any:
        """One labelling call's Outcome (its deployment, its answer); None when the budget is spent.
        Raises HedgewayError."""
        if not await self.room(pair):
            return None
        outcome, fields = await self.again(_Caller(rid), endpoint, model, req, canary=False,
                                           tag={"learn": pair.route})
        self.spent[pair.route].own.append((self.clock(), fields["cost"]))
        return outcome

    async def _verdict(self, pair: Pair, rid: str, req: ChatRequest, a: str, b: str) -> tuple[bytes | None, Any]:
        body = {"model": pair.spec.judge, "messages": judge_messages(req.body.get("messages") or [], a, b),
                "temperature": 0}
        outcome = await self._call(pair, rid, "judge", pair.spec.judge, ChatRequest(pair.spec.judge, body))
        if outcome is None:
            return None, None
        return outcome.result.body, parse_verdict(answer_text(outcome.result.body))

    async def _label(self, pair: Pair, rid: str, key_id: str, req: ChatRequest, served: str,
                     answer: bytes | list[bytes]) -> None:
        outcome = "unstored"  # unless a step below says otherwise
        try:
            answer = assemble(answer) if isinstance(answer, list) else answer
            if answer is None:  # a stream that is no whole answer
                outcome = "no_answer"
                return
            other = pair.weak if served == "strong" else pair.strong
            try:
                call = await self._call(pair, f"{rid}-learn", "shadow", other, req)
            except HedgewayError:
                outcome = "other_failed"
                return
            if call is None:
                outcome = "budget"
                return
            if call.deployment.model_name != other:  # it fell back to another model: no answer of that tier
                outcome = "other_failed"
                return
            theirs = call.result.body
            strong, weak = (answer, theirs) if served == "strong" else (theirs, answer)
            strong, weak = answer_text(strong), answer_text(weak)
            label = Label(pair.route, rid, self.clock(), "judge", rid, key_id, pair.strong, pair.weak, served)
            try:
                one, v1 = await self._verdict(pair, f"{rid}-learn-1", req, strong, weak)
                two, v2 = (None, None) if one is None else await self._verdict(pair, f"{rid}-learn-2", req, weak,
                                                                             strong)
            except HedgewayError as exc:
                label.verdict, label.detail = "error", f"judge call failed: {type(exc).__name__}"
            else:
                if one is None or two is None:
                    outcome = "budget"
                    return
                label.verdict, label.strong_wins = combine(v1, v2)
                label.detail = orjson.dumps({"strong_first": v1, "weak_first": v2}).decode()
            await self.describe(label, req.body)
            await asyncio.to_thread(lambda: self.store().put([label]))
            outcome = label.verdict
        except Exception as exc:  # noqa: BLE001 - labelling must never surface; the count and log say it failed
            log.warning("label for %s on %s not stored (%s)", rid, pair.route, type(exc).__name__)
        finally:
            self.in_flight[pair.route] -= 1
            self.counts[(pair.route, outcome)] += 1

    async def describe(self, label: Label, body: dict[str, Any]) -> None:
        """The label's features: embedding (when the minilm embedder is installed), cues and n-grams, and
        the prompt with ledger.log_prompts."""
        label.features = await asyncio.to_thread(features, body)
        if self.log_prompts:
            label.prompt = orjson.dumps(body.get("messages")).decode()
        text = prompt_text(body)
        embedder = self._embedder if self._embedder is not None else await asyncio.to_thread(self.embedder)
        if embedder and text.strip():  # no user text (tool results only, images): nothing to embed
            vec = await embedder.embed([text])
            label.embedding = encode_embedding(vec[0])

    def embedder(self) -> Any:
        """The minilm embedder; False without the `semantic` extra. Loads a model: call it off the loop."""
        with self._opening:
            if self._embedder is None:
                from hedgeway.embedders import EMBEDDERS

                try:
                    self._embedder = EMBEDDERS["minilm"](None, None)
                except RuntimeError:  # the `semantic` extra is missing: labels keep cues and n-grams only
                    log.warning("labels are stored without embeddings: pip install 'hedgeway[semantic]'")
                    self._embedder = False
        return self._embedder

    def render_metrics(self) -> str:
        if not any(p.spec for p in self.pairs.values()):
            return ""
        lines = ["# HELP hedgeway_route_labels_total Labelling of sampled requests per route, by outcome "
                 "(strong, weak, tie, split, unparsed, error, budget, skipped, other_failed, no_answer, unstored).",
                 "# TYPE hedgeway_route_labels_total counter"]
        lines += [f'hedgeway_route_labels_total{{route="{r}",outcome="{o}"}} {n}'
                  for (r, o), n in sorted(self.counts.items())]
        lines += ["# HELP hedgeway_route_label_spend_usd Labelling spend of the current UTC day per route.",
                  "# TYPE hedgeway_route_label_spend_usd gauge"]
        day = int(self.clock() // DAY)
        lines += [f'hedgeway_route_label_spend_usd{{route="{r}"}} {s.total():f}' for r, s in sorted(self.spent.items())
                  if s.day == day]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
