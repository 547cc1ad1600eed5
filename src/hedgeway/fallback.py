"""The fallback loop: try each group of the plan in order; within a group, retry up to `num_retries`
times, moving to the group's next deployment when there is one and backing off (with jitter, honouring
`Retry-After` up to a cap) when the same deployment is tried again. Every failure is collected; when all
attempts fail, `AllDeploymentsFailed` carries them. A failure that is not fallback-eligible (the request
itself is bad) is raised at once: another deployment would reject it too.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from hedgeway.errors import AllDeploymentsFailed, UpstreamError
from hedgeway.types import Deployment


@dataclass(slots=True)
class Outcome:
    result: Any
    deployment: Deployment
    attempts: int
    upstream_s: float  # time spent waiting on upstreams and back-offs (not gateway overhead)
    failures: list[UpstreamError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    num_retries: int = 1
    backoff: float = 0.1
    max_retry_after: float = 5.0


async def call_with_fallback(groups: Sequence[Sequence[Deployment]], call: Callable[[Deployment], Awaitable[Any]],
                             policy: RetryPolicy, inflight: dict[str, int], *, hold: bool = False) -> Outcome:
    """Run `call(deployment)` along the plan until one succeeds.

    `inflight[deployment.id]` counts calls under way (for least-in-flight balancing and llm_queue_depth).
    With `hold=True` a successful call stays counted: the caller releases it when its stream ends.
    Failures carry the attempt count in `AllDeploymentsFailed.failures`; a non-eligible error is raised
    with `.attempts` set."""
    failures: list[UpstreamError] = []
    upstream = 0.0
    attempts = 0
    for group in groups:
        size = len(group)
        for i in range(1 + policy.num_retries):
            dep = group[i % size]
            if i >= size:  # the same deployment again: back off before hammering it
                delay = policy.backoff * 2 ** (i // size - 1)
                hint = failures[-1].retry_after if failures else None
                if hint:
                    delay = max(delay, min(hint, policy.max_retry_after))
                delay *= 0.5 + random.random() / 2
                await asyncio.sleep(delay)
                upstream += delay
            attempts += 1
            inflight[dep.id] += 1
            started = time.perf_counter()
            ok = False
            try:
                result = await call(dep)
                ok = True
            except UpstreamError as exc:
                exc.deployment = exc.deployment or dep.id
                if not exc.fallback_eligible:
                    exc.attempts = attempts
                    raise
                failures.append(exc)
                continue
            finally:
                upstream += time.perf_counter() - started
                if not (ok and hold):
                    inflight[dep.id] -= 1
            return Outcome(result, dep, attempts, upstream, failures)
    raise AllDeploymentsFailed(failures)
