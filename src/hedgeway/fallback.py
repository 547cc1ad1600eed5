"""The fallback loop: try each group of the plan in order; within a group, retry up to `num_retries`
times, moving to the group's next deployment when there is one and backing off (with jitter, honouring
`Retry-After` up to a cap) when the same deployment is tried again. Every failure is collected; when all
attempts fail, `AllDeploymentsFailed` carries them. A failure that is not fallback-eligible (the request
itself is bad) is raised at once: another deployment would reject it too.

With a `guard` (from the plan), each attempt reports to deployment health, and a deployment with an SLA
deadline (time to first event for streams, `hold=True`; whole answer otherwise) that misses it is
abandoned (its call cancelled, so the client only ever sees one answer) and the loop moves straight on
to the next group — the next tier — instead of retrying a deployment that is slow right now.
A deployment that is busy (`DeploymentBusy`: its queue at the gateway is full or the wait for a slot timed
out, queueing.py) is not retried either, nor counted against its health: the loop moves on to the group's
next deployment, else the next group.
A guard with `hedge_delay` races the plan's first deployment against the next group's first one
(`routing.hedge.race`); `Outcome.hedged` names the cancelled loser.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from hedgeway.errors import AllDeploymentsFailed, DeploymentBusy, UpstreamError, UpstreamTimeout
from hedgeway.routing.hedge import race
from hedgeway.types import Deployment


@dataclass(slots=True)
class Outcome:
    result: Any
    deployment: Deployment
    attempts: int
    upstream_s: float  # time spent waiting on upstreams and back-offs (not gateway overhead)
    failures: list[UpstreamError] = field(default_factory=list)
    hedged: str | None = None  # the deployment raced against the winner and cancelled (hedging)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    num_retries: int = 1
    backoff: float = 0.1
    max_retry_after: float = 5.0


def retry_delay(policy: RetryPolicy, again: int, retry_after: float | None) -> float:
    """Seconds to wait before trying a deployment for the `again`-th time (1, 2, …): exponential back-off,
    at least the upstream's Retry-After (capped at `max_retry_after`), jittered down to half of it."""
    delay = policy.backoff * 2 ** (again - 1)
    if retry_after:
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return delay * (0.5 + random.random() / 2)


async def call_with_fallback(groups: Sequence[Sequence[Deployment]], call: Callable[[Deployment], Awaitable[Any]],
                             policy: RetryPolicy, inflight: dict[str, int], *, hold: bool = False,
                             guard: Any = None) -> Outcome:
    """Run `call(deployment)` along the plan until one succeeds.

    `inflight[deployment.id]` counts calls under way, including those waiting for a slot at the gateway
    (so least-in-flight balancing sees a queue as load).
    With `hold=True` a successful call stays counted: the caller releases it when its stream ends.
    Failures carry the attempt count in `AllDeploymentsFailed.failures`; a non-eligible error is raised
    with `.attempts` set."""
    failures: list[UpstreamError] = []
    upstream = 0.0
    attempts = 0
    delay = guard.hedge_delay if guard is not None else None
    if delay is not None and len(groups) > 1:  # hedge the first choice with the next group's first
        result, dep, loser, failures, upstream = await race(call, groups[0][0], groups[1][0], delay,
                                                            inflight, hold, guard)
        attempts = 1 + (loser is not None or len(failures) > 1)
        if dep is not None:
            return Outcome(result, dep, attempts, upstream, failures, hedged=loser)
        groups = groups[1:] if len(failures) > 1 else groups  # both tried and failed: go on after them
    for group in groups:
        size = len(group)
        for i in range(1 + policy.num_retries):
            dep = group[i % size]
            if i >= size and guard is not None and not guard.closed(dep.id):
                break  # its breaker just opened (or this was the half-open probe): next group
            if i >= size:  # the same deployment again: back off before hammering it
                delay = retry_delay(policy, i // size, failures[-1].retry_after if failures else None)
                await asyncio.sleep(delay)
                upstream += delay
            attempts += 1
            inflight[dep.id] += 1
            started = time.perf_counter()
            ok = False
            deadline = guard.deadline(dep.id, hold) if guard is not None else None
            try:
                if deadline is None:
                    result = await call(dep)
                else:
                    try:
                        result = await asyncio.wait_for(call(dep), deadline)
                    except asyncio.TimeoutError:
                        guard.sla_missed(dep.id)
                        raise UpstreamTimeout(f"SLA deadline of {deadline:g}s missed", deployment=dep.id,
                                              code="sla_deadline_missed") from None
                ok = True
            except UpstreamError as exc:
                exc.deployment = exc.deployment or dep.id
                if not exc.fallback_eligible:  # the request's fault, not the deployment's
                    exc.attempts = attempts
                    raise
                failures.append(exc)
                if isinstance(exc, DeploymentBusy):  # busy, not broken: another deployment, no retry
                    if i + 1 >= size:
                        break
                    continue
                if guard is not None:
                    guard.record(dep.id, False, time.perf_counter() - started, hold)
                if exc.code == "sla_deadline_missed":
                    break  # this deployment is slow now: the next tier, not a retry
                continue
            finally:
                elapsed = time.perf_counter() - started
                upstream += elapsed
                if not (ok and hold):
                    inflight[dep.id] -= 1
            if guard is not None:
                guard.record(dep.id, True, elapsed, hold)
            return Outcome(result, dep, attempts, upstream, failures)
    raise AllDeploymentsFailed(failures)
