"""The `cache:` config section.

    cache:
      enabled: true
      backend: memory            # memory | redis (see hedgeway.cache.backends)
      sqlite_path: null           # memory: snapshot file kept across restarts
      redis_url: redis://127.0.0.1:6379/0
      prefix: hw:cache            # every Redis key starts with it
      embedder: minilm            # minilm | openai | none (hedgeway.embedders.EMBEDDERS)
      embedding_model: null       # with embedder: openai, the configured model name to call
      semantic: true
      threshold: 0.95             # cosine; from `hedgeway cache calibrate` (QQP figures in bench/README.md)
      ttl: 3600                   # seconds an entry lives
      max_entries: 10000          # LRU bound (per process for memory, per prefix for redis)
      key_index: true             # redis: exact misses without a round trip (cache/key_index.py)
      max_temperature: 1.0        # above it, no semantic hits (sampling makes different answers expected)
      semantic_above_max_temperature: false
      models:                     # per model name; unset fields inherit the section's
        gpt-4o: {threshold: 0.97, ttl: 600}
        creative: {enabled: false}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hedgeway.strict import Strict


class CacheModelIn(Strict):
    enabled: bool | None = None
    semantic: bool | None = None
    threshold: float | None = Field(None, gt=0, le=1)
    ttl: float | None = Field(None, gt=0)


class CacheIn(Strict):
    enabled: bool = False
    backend: Literal["memory", "redis"] = "memory"
    # memory backend: save live entries to this SQLite file at shutdown, load them at start (None: don't)
    sqlite_path: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = Field("hw:cache", min_length=1)
    embedder: str = "minilm"
    embedding_model: str | None = None
    semantic: bool = True
    # Chosen for precision, not recall: a wrong hit answers someone else's question (bench/README.md, Cache).
    threshold: float = Field(0.95, gt=0, le=1)
    ttl: float = Field(3600, gt=0)
    max_entries: int = Field(10_000, ge=1)
    # redis backend: know every stored key from Redis's broadcast tracking, so an exact miss needs no round
    # trip (cache/key_index.py); a store by another replica may be missed for well under a millisecond
    key_index: bool = True
    # HNSW (usearch, in the `semantic` extra) for buckets of ≥ 4096 entries, built off the event loop;
    # off, or usearch not installed: exact search (entry.Bucket)
    ann: bool = True
    max_temperature: float = Field(1.0, ge=0)
    semantic_above_max_temperature: bool = False
    models: dict[str, CacheModelIn] = Field(default_factory=dict)

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, v: str) -> str:
        from hedgeway.embedders import (
            EMBEDDERS,  # the registry is the list of names (numpy only)
        )

        if v != "none" and v not in EMBEDDERS:
            raise ValueError(f"unknown embedder {v!r} (one of {', '.join([*EMBEDDERS, 'none'])})")
        return v

    @model_validator(mode="after")
    def _embedding_model(self) -> CacheIn:
        if self.embedder == "openai" and not self.embedding_model:
            raise ValueError("embedder 'openai' needs embedding_model (a configured model name)")
        return self


class ModelPolicy:
    """The effective settings for one model name (per-model overrides over the section's)."""

    __slots__ = ("enabled", "semantic", "threshold", "ttl")

    def __init__(self, section: CacheIn, model: str):
        m = section.models.get(model) or CacheModelIn()
        self.enabled = section.enabled if m.enabled is None else m.enabled
        self.semantic = (section.semantic if m.semantic is None else m.semantic) and section.embedder != "none"
        self.threshold = section.threshold if m.threshold is None else m.threshold
        self.ttl = section.ttl if m.ttl is None else m.ttl
