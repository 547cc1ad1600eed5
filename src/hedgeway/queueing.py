"""Per-deployment concurrency: `max_concurrency` slots, and a fair FIFO of requests waiting for one.

A self-hosted server has a fixed number of slots; past them it answers badly (llama.cpp's server sent
empty streams to 5 of 6 concurrent requests with one slot). A `Gate` keeps the surplus at the gateway:
a request beyond the slots waits in line, in arrival order (a freed slot passes straight to the head of
the line, so a newcomer never overtakes a waiter), for at most `queue_timeout` seconds, in a line of at
most `max_queue`. Past either it fails as `DeploymentBusy` (`QueueFull` when the line is full), which the
fallback loop treats as "busy now": the next deployment or fallback model, never a retry, never a mark
against the deployment's health. A stream holds its slot until it ends (completed, broken or abandoned).

Per replica, on purpose: each gateway process has its own gates, so N replicas allow up to
N × max_concurrency calls. A shared (Redis) semaphore would put a network round trip in front of every
call and leak slots when a replica dies mid-stream; set max_concurrency to the server's slots divided by
the replicas in front of it instead.

Only deployments with `max_concurrency` get a gate; for the others the cost is one dict lookup.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable, Mapping

from hedgeway.errors import DeploymentBusy, QueueFull
from hedgeway.providers.base import StreamReply
from hedgeway.types import Deployment


class Gate:
    """`limit` slots of one deployment. `active` holds slots in use, `waiters` the line (one future
    each, in arrival order); `len(waiters)` is exactly the number waiting (llm_queue_depth)."""

    __slots__ = ("dep_id", "limit", "timeout", "max_queue", "active", "waiters")

    def __init__(self, dep_id: str, limit: int, timeout: float, max_queue: int):
        self.dep_id, self.limit, self.timeout, self.max_queue = dep_id, limit, timeout, max_queue
        self.active = 0
        self.waiters: deque[asyncio.Future] = deque()

    async def enter(self) -> None:
        """Take a slot, waiting in line if none is free. Raises QueueFull or DeploymentBusy (timed out);
        cancelled while waiting, the request leaves the line (and passes on a slot it was just given)."""
        if self.active < self.limit and not self.waiters:
            self.active += 1
            return
        if len(self.waiters) >= self.max_queue:
            raise QueueFull(f"deployment busy: all {self.limit} slot(s) in use and {len(self.waiters)} "
                            "request(s) waiting (Hedgeway queue full)", deployment=self.dep_id,
                            retry_after=self.timeout)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiters.append(fut)
        timer = loop.call_later(self.timeout, self._expire, fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.leave()  # handed a slot just as it was cancelled: give it to the next in line
            else:
                try:
                    self.waiters.remove(fut)
                except ValueError:
                    pass
            raise
        finally:
            timer.cancel()

    def _expire(self, fut: asyncio.Future) -> None:
        if not fut.done():
            fut.set_exception(DeploymentBusy(
                f"deployment busy: no slot free after waiting {self.timeout:g}s in the Hedgeway queue",
                deployment=self.dep_id, retry_after=self.timeout))

    def leave(self) -> None:
        """Free a slot: it passes to the first live waiter, else it becomes free."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active -= 1

    async def run(self, call: Callable[[Any], Awaitable[Any]], arg: Any) -> Any:
        """`call(arg)` inside a slot. A StreamReply comes back wrapped so the slot is freed when the
        stream ends or is closed, whichever comes first."""
        await self.enter()
        try:
            result = await call(arg)
        except BaseException:
            self.leave()
            raise
        if isinstance(result, StreamReply):
            return self._held(result)
        self.leave()
        return result

    def _held(self, stream: StreamReply) -> StreamReply:
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                self.leave()

        async def rest():
            try:
                async for chunk in stream.rest:
                    yield chunk
            finally:
                release()

        def close() -> None:
            stream.close()
            release()
        return StreamReply(stream.first, rest(), close, stream.headers)


def build_gates(deployments: Mapping[str, Deployment]) -> dict[str, Gate]:
    """A gate for each deployment with `max_concurrency`."""
    return {d.id: Gate(d.id, d.max_concurrency, d.queue_timeout, d.max_queue)
            for d in deployments.values() if d.max_concurrency}


def waiting(gates: Mapping[str, Gate], dep_id: str) -> int:
    gate = gates.get(dep_id)
    return len(gate.waiters) if gate is not None else 0
