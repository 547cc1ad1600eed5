"""Hedged requests: if the primary has not answered (non-streaming) or sent its first event (streams)
after `delay` seconds, start the backup in parallel; the first success wins and the other call is
cancelled (a stream that also arrived is closed unread), so the client sees exactly one answer.

`race` returns `(result, winner, loser_id | None, failures, elapsed_s)`; `loser_id` names the cancelled
deployment (None when the primary answered before the delay or the backup was never needed). A failure
that is not fallback-eligible cancels the other call and is raised. When both fail, their errors are
returned with result None so the fallback loop can go on with the rest of the plan.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from hedgeway.errors import UpstreamError
from hedgeway.types import Deployment


def _discard(task: asyncio.Task, lost: list[str], dep: Deployment) -> None:
    """Cancel a losing call; if it already produced a stream, close it so its connection is freed."""
    lost.append(dep.id)
    if not task.done():
        task.cancel()
        return
    if task.exception() is None:
        close = getattr(task.result(), "close", None)
        if close is not None:
            close()


async def race(call: Callable[[Deployment], Awaitable[Any]], primary: Deployment, backup: Deployment,
               delay: float, inflight: dict[str, int], hold: bool, guard: Any):
    started = time.perf_counter()
    tasks: dict[asyncio.Task, Deployment] = {asyncio.ensure_future(call(primary)): primary}
    inflight[primary.id] += 1
    failures: list[UpstreamError] = []
    lost: list[str] = []
    winner: asyncio.Task | None = None
    pending: set[asyncio.Task] = set(tasks)
    try:
        done, pending = await asyncio.wait(pending, timeout=delay)
        if not done:
            t = asyncio.ensure_future(call(backup))
            tasks[t] = backup
            inflight[backup.id] += 1
            pending.add(t)
        while True:
            for t in done:
                dep = tasks[t]
                exc = t.exception()
                if exc is None and winner is None:
                    winner = t
                    continue
                if exc is None:  # both finished at once: keep the first, drop the other
                    _discard(t, lost, dep)
                    continue
                if not isinstance(exc, UpstreamError):
                    raise exc
                exc.deployment = exc.deployment or dep.id
                if not exc.fallback_eligible:
                    raise exc
                failures.append(exc)
                guard.record(dep.id, False, time.perf_counter() - started, hold)
            if winner is not None or not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in pending:
            _discard(t, lost, tasks[t])
        elapsed = time.perf_counter() - started
        for t, dep in tasks.items():
            if not (t is winner and hold):
                inflight[dep.id] -= 1
    if winner is None:
        return None, None, None, failures, elapsed
    dep = tasks[winner]
    guard.record(dep.id, True, elapsed, hold)
    return winner.result(), dep, (lost[0] if lost else None), failures, elapsed
