"""The embedding model's one inference thread (MiniLM in hedgeway.embedders): batches and OS priority.

The thread runs in arrival order calls and embedding batches; texts submitted while a batch runs are
taken together as the next batch (up to MAX_BATCH), so concurrent requests share one onnxruntime run —
but only texts of similar length (PAD_RATIO): a batch is padded to its longest text. Measured
(bench/semantic_path.py mix, Banking77 questions, 16 concurrent lookups, one core), CPU per request:
one text per run 8.2–8.6 ms; any waiting texts joined 9.7–10.6 ms (the padding costs more than the
shared run saves); similar lengths only (×1.2) 6.7–7.8 ms, (×1.5) 6.6–7.1 ms.

Priority: on a gateway with one core, inference competes with the event loop serving every other model.
Measured (bench/semantic_path.py other, one core, Banking77 questions embedded beside a model without
the semantic cache): that model's round-trip p99 went from ≈ 0.6–1.0 ms alone to ≈ 4–6 ms with the
thread at normal priority, ≈ 4.1 ms at nice +10 (Linux 6.18's EEVDF lets the running thread finish its
slice), and ≈ 0.75–0.8 ms under SCHED_IDLE, which any runnable normal thread preempts. So the thread runs
under SCHED_IDLE (nice +EMBED_NICE where that policy is missing). Idle priority gets almost no CPU while
the event loop keeps the core busy, so a caller that has waited STARVED seconds `boost`s the thread to
normal policy at nice +EMBED_NICE (≈ 10% of a contended core); it returns to idle when its queue is
empty. Lowering one's own priority needs no privilege; where a change is refused, the thread keeps the
priority it has.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("hedgeway.embedders")
EMBED_IDLE = True  # SCHED_IDLE while not starved (False: nice +EMBED_NICE throughout)
EMBED_NICE = 10  # nice increment when boosted (or without SCHED_IDLE)
STARVED = 0.05  # seconds a caller waits before boosting the thread
MAX_BATCH = 32  # texts per onnxruntime run: a bigger batch only delays its first caller
PAD_RATIO = 1.5  # a waiting job joins a batch only when no text is more than this much longer than another


def _set_priority(tid: int, idle: bool) -> bool:
    """SCHED_IDLE (idle) or SCHED_OTHER at nice +EMBED_NICE for thread `tid`; False when refused."""
    try:
        if idle and EMBED_IDLE and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return True
        if hasattr(os, "sched_setscheduler"):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, EMBED_NICE)
        return True
    except (AttributeError, OSError) as exc:
        log.debug("embedder thread priority unchanged: %s", exc)
        return False


def _alike(texts: list[str], more: list[str]) -> bool:
    """Whether `more` can join a batch of `texts` without much padding (characters as a proxy for tokens:
    a batch is padded to its longest text, and padding costs as much as text)."""
    lengths = [len(t) for t in texts + more]
    return max(lengths) <= PAD_RATIO * min(lengths) + 8


class Worker:
    """One daemon thread running calls and embedding batches (see the module's docstring). Thread-safe:
    gateways on different event loops (tests, background gateways) share the process's model."""

    def __init__(self, embed_many: Callable[[list[str]], list[Any]]):
        self._embed_many = embed_many
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._tid: int | None = None
        self._boosted = False
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> Future:
        """A Future of one (vector, too long) per text."""
        return self._submit(("embed", list(texts)))

    def call(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._submit(("call", fn, args))

    def boost(self) -> None:
        """Normal policy (nice +EMBED_NICE) until the queue is empty: a caller is starved."""
        with self._lock:
            if self._tid is not None and not self._boosted:
                self._boosted = _set_priority(self._tid, idle=False)

    def _submit(self, job: tuple) -> Future:
        future: Future = Future()
        self._queue.put((future, job))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="hedgeway-embed", daemon=True)
                    self._thread.start()
        return future

    def _run(self) -> None:
        self._tid = threading.get_native_id()
        _set_priority(self._tid, idle=True)
        held = None
        while True:
            if held is None and self._boosted and self._queue.empty():
                with self._lock:
                    self._boosted = not _set_priority(self._tid, idle=True)
            future, job = held or self._queue.get()
            held = None
            if job[0] == "call":
                self._settle([future], lambda: [job[1](*job[2])])
                continue
            batch, texts = [(future, len(job[1]))], list(job[1])
            while len(texts) < MAX_BATCH:  # whatever else is already waiting joins this run
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt[1][0] != "embed" or not _alike(texts, nxt[1][1]):
                    held = nxt  # keeps its turn: runs right after this batch
                    break
                batch.append((nxt[0], len(nxt[1][1])))
                texts += nxt[1][1]

            def run(batch=batch, texts=texts):
                rows, out, i = self._embed_many(texts), [], 0
                for _, n in batch:
                    out.append(rows[i:i + n])
                    i += n
                return out
            self._settle([f for f, _ in batch], run)

    @staticmethod
    def _settle(futures: list[Future], run: Callable[[], list[Any]]) -> None:
        try:
            results = run()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for f in futures:
                f.set_exception(exc)
            return
        for f, r in zip(futures, results):
            f.set_result(r)
