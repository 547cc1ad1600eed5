"""Canary ramps: a share of one model's traffic goes to a candidate model, stage by stage; promoted while
healthy, rolled back by itself when a trigger fires. Started from the CLI (`hedgeway canary start`), kept
in the ledger database (`canary.store`), so the state survives restarts and every replica shares it.

Request path (`Planner.plan` → `book.apply(groups)`, a dict lookup when no canary is live): the first
group of the canary's model is preceded, with probability `share`, by the candidate's group, so a failing
candidate falls back to the baseline and the user still sees one answer. The decision goes into the
route (`{"canary": name, "arm": "candidate" | "baseline", "share": …}`), i.e. the ledger and the
`x-hedgeway-route` header. `book.observe(tag, record)` counts the candidate arm: requests, errors (the
candidate did not answer: a user-facing failure, or a failure the baseline covered), SLA misses.

Controller (`book.tick()`, on a daemon thread every `interval` s): writes this replica's counts of the
current stage, reloads every canary (a CLI command or another replica's transition reaches this replica
within `interval`), and judges running canaries on the counts summed over all replicas:
  * rollback when requests ≥ min_requests and error rate > max_error_rate (default 2%) or SLA-fallback
    rate > max_sla_rate (default 10%); or, with `min_agreement` set, when at least min_quality_samples
    candidate answers were compared with the baseline's answer to the same request (a `quality_sample`
    share, asked after the response; `canary.quality`) and their mean agreement is below the bound;
  * promote when requests ≥ min_requests and the stage has lasted min_seconds: to the next stage, or to
    `promoted` after the last (the candidate then takes all the model's traffic).
A transition is one conditional UPDATE (exactly one replica wins), an event row, a log line and a metric.

Router versions: a canary whose `model` is a routed name and whose `candidate` is `router:PATH` (a proven
`router train --labels` artefact, readable by every replica) shares that route's traffic between its
configured router and the new version (`book.route_arm`): the candidate arm is planned by a copy of the
route with `router: trained, options: {model: PATH}`. Counted, checked against the baseline's answer
and judged as above; an error is a request that failed for the user. Promoted, the new version plans all of the route's
traffic until the config names it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hedgeway.canary.store import LIVE, CanaryStore, Row
from hedgeway.ledger.base import Record
from hedgeway.types import Deployment

log = logging.getLogger("hedgeway.canary")
Group = tuple[Deployment, ...]
DEFAULTS = {"stages": [5, 25, 50, 100], "min_requests": 50, "min_seconds": 300.0, "max_error_rate": 0.02,
            "max_sla_rate": 0.10, "min_agreement": None, "quality_sample": 0.1, "min_quality_samples": 20}
_STATES = ("running", "paused", "promoted", "rolled_back")


@dataclass(frozen=True, slots=True)
class Live:
    name: str
    share: float
    group: Group  # the candidate's deployments
    ids: frozenset[str]
    quality_sample: float  # share of candidate answers compared with the baseline's (0: quality trigger off)
    router: Any = None  # a router-version canary: the route (RoutedModel) planned by the new version


class Counts:
    __slots__ = ("seq", "requests", "errors", "sla", "checked", "agreement")

    def __init__(self, seq: int):
        self.seq, self.requests, self.errors, self.sla, self.checked, self.agreement = seq, 0, 0, 0, 0, 0.0

    def values(self) -> tuple[int, int, int, int, float]:
        return self.requests, self.errors, self.sla, self.checked, self.agreement


def verdict(row: Row, totals: tuple[int, int, int, int, float], now: float) -> tuple[str, int, str] | None:
    """(state, stage, reason) to move a running canary to, or None to stay. Pure. `totals`: requests,
    errors, SLA fallbacks, answers compared with the baseline, and the sum of their agreement."""
    s = {**DEFAULTS, **row.settings}
    requests, errors, sla, checked, agreement = totals
    bound = s["min_agreement"]
    if bound is not None and checked >= s["min_quality_samples"] and agreement / checked < bound:
        return "rolled_back", row.stage, f"agreement with the baseline {agreement / checked:.2f} < {bound:g} ({checked} compared)"
    if requests < s["min_requests"]:
        return None
    if errors / requests > s["max_error_rate"]:
        return "rolled_back", row.stage, f"error rate {errors / requests:.1%} > {s['max_error_rate']:.1%} ({errors}/{requests})"
    if sla / requests > s["max_sla_rate"]:
        return "rolled_back", row.stage, f"SLA-fallback rate {sla / requests:.1%} > {s['max_sla_rate']:.1%} ({sla}/{requests})"
    if now - row.stage_started < s["min_seconds"] or (bound is not None and checked < s["min_quality_samples"]):
        return None
    healthy = f"healthy: {requests} requests, {errors} errors, {sla} SLA fallbacks"
    if row.stage + 1 < len(s["stages"]):
        return "running", row.stage + 1, healthy
    return "promoted", row.stage, healthy


class CanaryBook:
    def __init__(self, store: CanaryStore, models: Mapping[str, Group], interval: float = 1.0,
                 routes: Mapping[str, Any] | None = None):
        self.store = store
        self.models = models
        self.routes = dict(routes or {})  # route name -> RouteIn, for router-version canaries
        self._versions: dict[tuple[str, str], Any] = {}  # (route, artefact path) -> RoutedModel, loaded once
        self.interval = interval
        self.by_model: dict[str, Live] = {}  # swapped whole by the controller; read by the request path
        self.by_route: dict[str, Live] = {}
        self.counts: dict[str, Counts] = {}
        self.rows: list[Row] = []
        self.transitions: dict[tuple[str, str], int] = defaultdict(int)
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self.tick()
        self._thread = threading.Thread(target=self._run, name="hedgeway-canary", daemon=True)
        self._thread.start()

    # --- request path ---
    def apply(self, groups: Sequence[Group]) -> tuple[list[Group], dict[str, Any] | None, int | None]:
        """The plan's groups with the candidate placed in front of its model's group for a `share` of
        requests, the route tag, and the candidate group's index (None: baseline arm or no canary)."""
        for i, group in enumerate(groups):
            live = self.by_model.get(group[0].model_name)
            if live is None:
                continue
            if random.random() < live.share:
                return ([*groups[:i], live.group, *groups[i:]],
                        {"canary": live.name, "arm": "candidate", "share": live.share}, i)
            return list(groups), {"canary": live.name, "arm": "baseline", "share": live.share}, None
        return list(groups), None, None

    def route_arm(self, route: str) -> tuple[Any, dict[str, Any] | None]:
        """(the RoutedModel to plan with — None: the configured one —, the route tag) for a routed name."""
        live = self.by_route.get(route)
        if live is None:
            return None, None
        if random.random() < live.share:
            return live.router, {"canary": live.name, "arm": "candidate", "share": live.share}
        return None, {"canary": live.name, "arm": "baseline", "share": live.share}

    def observe(self, tag: Mapping[str, Any], rec: Record) -> None:
        """Count one finished candidate-arm request (called with the request's one ledger record)."""
        if tag.get("arm") != "candidate":
            return
        counts, live = self.counts.get(tag["canary"]), self.by_model_of(tag["canary"])
        if counts is None or live is None:
            return
        counts.requests += 1
        if rec.route is not None and '"sla_missed"' in rec.route:
            counts.sla += 1
        elif (live.ids and rec.deployment not in live.ids) or rec.status >= 500 or \
                (rec.error_type or "").endswith("MidStream"):
            counts.errors += 1

    def by_model_of(self, name: str) -> Live | None:
        return next((live for live in [*self.by_model.values(), *self.by_route.values()] if live.name == name), None)

    def wants_check(self, tag: Mapping[str, Any]) -> bool:
        """Whether to compare this candidate answer with the baseline's (the quality trigger's sample)."""
        live = self.by_model_of(tag["canary"]) if tag.get("arm") == "candidate" else None
        return live is not None and live.quality_sample > 0 and random.random() < live.quality_sample

    def agreed(self, name: str, score: float) -> None:
        counts = self.counts.get(name)
        if counts is not None:
            counts.checked += 1
            counts.agreement += score

    # --- controller ---
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # the database blinked: keep serving the last state, try again
                log.warning("canary poll failed (%s); keeping the last known state", type(exc).__name__)

    def tick(self, now: float | None = None) -> None:
        """Report, reload, judge (see the module docstring); `now` is for tests."""
        now = time.time() if now is None else now
        for row in self.store.all():
            counts = self.counts.get(row.name)
            if counts is not None and counts.seq == row.seq and (counts.requests or counts.checked):
                self.store.report(row.name, row.seq, self.replica, counts.values())
            if row.state == "running" and self._known(row):
                move = verdict(row, self.store.totals(row.name, row.seq), now)
                new = self.store.transition(row, *move) if move is not None else None
                if new is not None:
                    self.transitions[(row.name, new.state)] += 1
                    log.warning("canary %s: %s → %s, candidate %s at %g%% of %s (%s)", row.name, row.state,
                                new.state, row.candidate, 100 * new.share, row.model, move[2])
        self._load(self.store.all())

    def _known(self, row: Row) -> bool:
        if row.candidate.startswith("router:"):
            return row.model in self.routes and self._version(row) is not None
        return row.model in self.models and row.candidate in self.models

    def _version(self, row: Row) -> Any:
        """The route planned by the candidate artefact (None when this replica cannot load it)."""
        key = (row.model, row.candidate[len("router:"):])
        if key not in self._versions:
            from hedgeway.routing.tiers import RoutedModel

            cfg = self.routes[row.model]
            try:
                self._versions[key] = RoutedModel(cfg.model_copy(update={"router": "trained",
                                                                         "options": {"model": key[1]}}), self.models)
            except (ValueError, KeyError) as exc:
                log.warning("canary %s: cannot load router %s (%s); ignored", row.name, key[1], exc)
                self._versions[key] = None
        return self._versions[key]

    def _load(self, rows: list[Row]) -> None:
        live: dict[str, Live] = {}
        routes: dict[str, Live] = {}
        for row in rows:
            if not self._known(row):
                if row.name not in self._warned and (row.state in LIVE or row.state == "promoted"):
                    self._warned.add(row.name)
                    log.warning("canary %s names a model this gateway does not have (%s → %s); ignored",
                                row.name, row.model, row.candidate)
                continue
            if row.name not in self.counts or self.counts[row.name].seq != row.seq:
                self.counts[row.name] = Counts(row.seq)
            if row.share > 0:
                s = {**DEFAULTS, **row.settings}
                sample = s["quality_sample"] if s["min_agreement"] is not None else 0.0
                if row.candidate.startswith("router:"):
                    routes[row.model] = Live(row.name, row.share, (), frozenset(), sample, self._version(row))
                    continue
                group = self.models[row.candidate]
                live[row.model] = Live(row.name, row.share, group, frozenset(d.id for d in group), sample)
        self.rows = rows
        self.by_model, self.by_route = live, routes

    def render_metrics(self) -> str:
        out = ["# HELP hedgeway_canary_share The candidate's share of its model's traffic.",
               "# TYPE hedgeway_canary_share gauge"]
        out += [f'hedgeway_canary_share{{canary="{r.name}"}} {r.share}' for r in self.rows]
        out += ["# HELP hedgeway_canary_state 1 for the canary's current state.", "# TYPE hedgeway_canary_state gauge"]
        out += [f'hedgeway_canary_state{{canary="{r.name}",state="{st}"}} {int(r.state == st)}'
                for r in self.rows for st in _STATES]
        out += ["# HELP hedgeway_canary_transitions_total Transitions this replica made.",
                "# TYPE hedgeway_canary_transitions_total counter"]
        out += [f'hedgeway_canary_transitions_total{{canary="{n}",to="{to}"}} {v}'
                for (n, to), v in sorted(self.transitions.items())]
        return "\n".join(out) + "\n"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.tick()  # the last counts of this replica
        except Exception:
            pass
        self.store.close()


def open_canaries(config: Any, interval: float) -> CanaryBook:
    return CanaryBook(CanaryStore(config.ledger.url), config.models, interval,
                      {r.name: r for r in config.router.routes})
