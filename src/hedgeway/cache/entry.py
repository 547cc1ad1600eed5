"""A cached answer and its vector index bucket, shared by every backend."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import orjson

from hedgeway.types import Usage


@dataclass(slots=True)
class Entry:
    body: bytes  # the OpenAI chat.completion body as sent to the client
    usage: Usage
    cost: Decimal

    def dumps(self) -> bytes:
        """The stored form: a header line ("e1", the usage, the cost), then the body as it is: the answer is
        most of the bytes, and re-encoding it as a JSON string cost more than everything else in a store."""
        u = self.usage
        return b"e1 %d %d %d %d %s\n" % (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens,
                                         str(self.cost).encode()) + self.body

    @classmethod
    def loads(cls, data: bytes) -> Entry:
        if data[:3] != b"e1 ":  # JSON: stored by an earlier version (a rolling upgrade, a snapshot)
            obj = orjson.loads(data)
            return cls(obj["body"].encode(), Usage(*obj["usage"]), Decimal(obj["cost"]))
        head, _, body = data.partition(b"\n")
        _, p, c, cached, written, cost = head.split(b" ")
        return cls(body, Usage(int(p), int(c), int(cached), int(written)), Decimal(cost.decode()))


log = logging.getLogger("hedgeway.cache")
ANN_MIN = 4096  # from this many vectors a bucket keeps an HNSW index, when `cache.ann` is on


def _in_background(fn) -> Future:
    """Run `fn` on a daemon thread: an index build (up to a minute) must not hold up the process's exit,
    which a ThreadPoolExecutor's worker would."""
    future: Future = Future()

    def run():
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever adopts the build
            future.set_exception(exc)

    threading.Thread(target=run, name="hedgeway-ann", daemon=True).start()
    return future


def _usearch_index():
    """usearch's Index class, or None when usearch is not installed."""
    try:
        import onnxruntime  # noqa: F401  (must be loaded before usearch, see Bucket)
    except ImportError:
        pass
    try:
        from usearch.index import Index
    except ImportError:
        return None
    return Index


class Bucket:
    """The vectors of one fingerprint bucket. Small buckets: exact search (one matrix-vector product over
    a matrix rebuilt lazily after a change) — a bucket only holds entries sharing tenant, model, system
    prompt, earlier turns and sampling parameters, typically tens to a few thousand. From ANN_MIN vectors
    a bucket also keeps an HNSW index (usearch, in the `semantic` extra; `cache.ann`, on by default, and
    exact search whenever usearch is not installed): exact search reads the whole matrix per query (150 MB
    at 100k × 384 floats, ≈ 11 ms here). The index stores half-precision vectors (half the memory traffic
    of f32, the same recall, bench/cache_bench.py search); its candidates are re-scored against the exact
    f32 vectors, so the threshold sees the same similarity exact search would.

    `pending` holds the entries stored without a vector (key -> the semantic text): a miss in an empty
    bucket is stored before anyone has embedded it, and its vector is computed when a later lookup
    searches this bucket (`fill`). A bucket with neither vectors nor pending texts is empty.

    The index is first built on a worker thread from a snapshot (4,096 vectors take 0.4 s, 100k about a
    minute on one core: too long to stall the event loop), with exact search meanwhile; the next call
    after the build adopts it and adds or removes what changed since the snapshot (after a bulk load, it
    builds again from a new snapshot instead). After that, the index is updated in place. usearch 2.26
    loaded before onnxruntime 1.32 makes onnxruntime's import segfault (measured), so it is imported
    here, after onnxruntime."""

    __slots__ = ("_ann", "_building", "_ids", "_keys", "_matrix", "_names", "_next", "ann", "pending", "vectors")

    def __init__(self, ann: bool = False):
        self.ann = ann
        self.vectors: dict[str, np.ndarray] = {}
        self.pending: dict[str, str] = {}
        self._keys: list[str] = []
        self._matrix: np.ndarray | None = None
        self._ann = None
        self._building: tuple[dict[str, np.ndarray], Future] | None = None  # (snapshot, build)
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._next = 0

    def add(self, key: str, vec: np.ndarray) -> None:
        self.add_many({key: vec})

    def add_many(self, items: dict[str, np.ndarray]) -> None:
        """Add or replace vectors (a replica loading a bucket adds them in one call)."""
        if not items:
            return
        self._adopt()
        for key in items.keys() & self.vectors.keys():
            self.remove(key)
        self.vectors.update(items)
        self._matrix = None
        if self._ann is not None:
            self._ann_add(list(items))
        elif self.ann and self._building is None and len(self.vectors) >= ANN_MIN:
            self._start_build()

    def __bool__(self) -> bool:
        return bool(self.vectors) or bool(self.pending)

    def fill(self, vectors: dict[str, np.ndarray]) -> None:
        """Vectors computed for pending entries; a zero row (a text longer than the embedder reads) leaves
        the bucket: that entry is cached exactly only, as if it had been embedded when stored."""
        for key in vectors:
            self.pending.pop(key, None)
        self.add_many({k: v for k, v in vectors.items() if v.any()})

    def remove(self, key: str) -> None:
        self.pending.pop(key, None)
        self._adopt()
        if self.vectors.pop(key, None) is not None:
            self._matrix = None
            if self._ann is not None:
                i = self._ids.pop(key)
                del self._names[i]
                self._ann.remove(i)

    def ready(self, timeout: float | None = None) -> None:
        """Wait for a pending index build and adopt it (benchmarks, tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._building is not None:  # a bulk load can need a second build
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not wait([self._building[1]], left).done:
                return
            self._adopt()

    def _start_build(self) -> None:
        index_cls = _usearch_index()
        if index_cls is None:
            self.ann = False  # not installed: exact search, without retrying the import on every add
            return
        snapshot = dict(self.vectors)  # shallow: vectors are never changed in place

        def build():
            matrix = np.stack(list(snapshot.values()))
            # A missed neighbour is only a cache miss (never a wrong hit); expansion 128 keeps self-recall
            # ≈ 98% at 100k random 384-d vectors, the hard case (bench/cache_bench.py search).
            index = index_cls(ndim=matrix.shape[1], metric="ip", dtype="f16", expansion_add=128,
                              expansion_search=128)
            index.add(np.arange(len(matrix), dtype=np.uint64), matrix, threads=1)
            return index

        self._building = (snapshot, _in_background(build))

    def _adopt(self) -> None:
        if self._building is None or not self._building[1].done():
            return
        snapshot, future = self._building
        self._building = None
        try:
            index = future.result()
        except Exception as exc:  # noqa: BLE001 - an index is an optimisation: fall back to exact search
            log.warning("cache index build failed (%s); this bucket searches exactly", exc)
            self.ann = False
            return
        if len(self.vectors.keys() - snapshot.keys()) > ANN_MIN // 4:
            self._start_build()  # a bulk load went on during the build: index it on the worker too
            return
        self._ann = index
        self._ids = {k: i for i, k in enumerate(snapshot)}
        self._names = dict(enumerate(snapshot))
        self._next = len(snapshot)
        changed = [k for k, v in snapshot.items() if self.vectors.get(k) is not v]
        for k in changed:  # removed or replaced since the snapshot
            i = self._ids.pop(k)
            del self._names[i]
            self._ann.remove(i)
        fresh = [k for k in self.vectors if k not in self._ids]
        if fresh:
            self._ann_add(fresh)

    def _ann_add(self, keys: list[str]) -> None:
        ids = np.arange(self._next, self._next + len(keys), dtype=np.uint64)
        self._next += len(keys)
        for k, i in zip(keys, ids):
            self._ids[k], self._names[int(i)] = int(i), k
        self._ann.add(ids, np.stack([self.vectors[k] for k in keys]))

    def candidates(self, vec: np.ndarray, threshold: float, limit: int = 4) -> list[tuple[str, float]]:
        """Up to `limit` (key, cosine) with cosine ≥ threshold, best first."""
        self._adopt()
        if not self.vectors:
            return []
        if self._ann is not None:
            out = []
            for i in self._ann.search(vec, limit).keys:
                name = self._names.get(int(i))
                if name is not None and name in self.vectors:
                    sim = float(self.vectors[name] @ vec)
                    if sim >= threshold:
                        out.append((name, sim))
            return sorted(out, key=lambda c: -c[1])
        if self._matrix is None:
            self._keys = list(self.vectors)
            self._matrix = np.stack([self.vectors[k] for k in self._keys])
        sims = self._matrix @ vec
        idx = np.flatnonzero(sims >= threshold)
        if idx.size == 0:
            return []
        idx = idx[np.argsort(-sims[idx])][:limit]
        return [(self._keys[i], float(sims[i])) for i in idx]
