"""A cached answer and its vector index bucket, shared by every backend."""

from __future__ import annotations

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
        u = self.usage
        return orjson.dumps({"body": self.body.decode(), "cost": str(self.cost),
                             "usage": [u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens]})

    @classmethod
    def loads(cls, data: bytes) -> Entry:
        obj = orjson.loads(data)
        return cls(obj["body"].encode(), Usage(*obj["usage"]), Decimal(obj["cost"]))


ANN_MIN = 4096  # from this many vectors a bucket keeps an HNSW index, when `cache.ann` is on


class Bucket:
    """The vectors of one fingerprint bucket. Small buckets: exact search (one matrix-vector product over
    a matrix rebuilt lazily after a change) — a bucket only holds entries sharing tenant, model, system
    prompt, earlier turns and sampling parameters, typically tens to a few thousand. From ANN_MIN vectors
    a bucket also keeps an HNSW index (usearch, in the `semantic` extra; `cache.ann`, on by default, and
    exact search whenever usearch is not installed): exact search reads the whole matrix per query (150 MB
    at 100k × 384 floats, ≈ 11 ms here). The index stores half-precision vectors (half the memory traffic
    of f32, the same recall, bench/cache_bench.py search); its candidates are re-scored against the exact
    f32 vectors, so the threshold sees the same similarity exact search would. usearch 2.26 loaded before
    onnxruntime 1.32 makes onnxruntime's import segfault (measured), so it is imported here, after it."""

    __slots__ = ("_ann", "_ids", "_keys", "_matrix", "_names", "_next", "ann", "vectors")

    def __init__(self, ann: bool = False):
        self.ann = ann
        self.vectors: dict[str, np.ndarray] = {}
        self._keys: list[str] = []
        self._matrix: np.ndarray | None = None
        self._ann = None
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._next = 0

    def add(self, key: str, vec: np.ndarray) -> None:
        if key in self.vectors:
            self.remove(key)
        self.vectors[key] = vec
        self._matrix = None
        if self._ann is not None:
            self._ann_add([key])
        elif self.ann and len(self.vectors) >= ANN_MIN:
            self._ann_build()

    def remove(self, key: str) -> None:
        if self.vectors.pop(key, None) is not None:
            self._matrix = None
            if self._ann is not None:
                self._ann.remove(self._ids.pop(key))

    def _ann_build(self) -> None:
        try:
            import onnxruntime  # noqa: F401  (must be loaded before usearch, see above)
        except ImportError:
            pass
        try:
            from usearch.index import Index
        except ImportError:
            return
        # A missed neighbour is only a cache miss (never a wrong hit); expansion 128 keeps self-recall ≈ 98%
        # at 100k random 384-d vectors, the hard case (bench/cache_bench.py search).
        self._ann = Index(ndim=len(next(iter(self.vectors.values()))), metric="ip", dtype="f16",
                          expansion_add=128, expansion_search=128)
        self._ann_add(list(self.vectors))

    def _ann_add(self, keys: list[str]) -> None:
        ids = np.arange(self._next, self._next + len(keys), dtype=np.uint64)
        self._next += len(keys)
        for k, i in zip(keys, ids):
            self._ids[k], self._names[int(i)] = int(i), k
        self._ann.add(ids, np.stack([self.vectors[k] for k in keys]))

    def candidates(self, vec: np.ndarray, threshold: float, limit: int = 4) -> list[tuple[str, float]]:
        """Up to `limit` (key, cosine) with cosine ≥ threshold, best first."""
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
