"""The `trained` router: a route's own model from its own labels (`routing.proof`), used only once proven.

Artefact (`hedgeway router train --labels … --output MODEL.npz`): float32 primal weights over the
feature spec's columns (`labelled.FeatureSpec`), a bias, 101 quantiles of the training prompts' raw
scores, and JSON metadata: format, version, train date, n, apgr, ci, random_band, proven, features.

Route use (`router: trained, options: {model: MODEL.npz}`): a score is the prompt's rank among the
training prompts (0–1; thresholds 0.5/0.5 send about half of the traffic to the strong tier). An artefact
whose metadata says `proven: false` is loaded but never scores: the route sends every request to its
`default` tier (the most capable unless configured) and its decisions, `/v1/router/stats`, `/metrics`
and `config check` say why (`gate`). The embedding is the one the gateway computed for the request
(`Prompt.embedding`, shared with the semantic cache); offline (`router score`) it is computed here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hedgeway.routing.features import CUES, Prompt
from hedgeway.routing.labelled import EMBED_DIM, FeatureSpec, embed_text, minilm_embed
from hedgeway.routing.learned import dense_features, sparse_features

FORMAT = "hedgeway-trained-router/1"


@dataclass
class TrainedModel:
    w: np.ndarray
    b: float
    quantiles: np.ndarray  # 101 quantiles of the training prompts' raw scores
    spec: FeatureSpec
    meta: dict[str, Any]

    @classmethod
    def build(cls, w: np.ndarray, b: float, spec: FeatureSpec, train_scores: np.ndarray,
              report: dict[str, Any]) -> "TrainedModel":
        keep = ("n", "apgr", "ci", "random_band", "proven", "cv", "repeats", "permutations", "seed", "penalty")
        meta = {"format": FORMAT, "version": None, "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **{k: report[k] for k in keep}, "features": spec.as_dict()}
        return cls(w, b, np.quantile(train_scores, np.linspace(0, 1, 101)), spec, meta)

    def save(self, path: str | Path, version: str) -> None:
        self.meta["version"] = version
        np.savez_compressed(path, w=self.w.astype(np.float32), b=np.float64(self.b), q=self.quantiles,
                            meta=np.frombuffer(json.dumps(self.meta).encode(), np.uint8))

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        """Raises ValueError for a file that is not a trained-router artefact of this format."""
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("format") != FORMAT:
                    raise ValueError(f"{path}: not a {FORMAT} artefact (format {meta.get('format')!r})")
                spec = FeatureSpec.of(meta["features"])
                w = z["w"].astype(np.float32)
                if w.shape != (spec.width,):
                    raise ValueError(f"{path}: {w.shape[0]} weights for a {spec.width}-wide feature spec")
                return cls(w, float(z["b"]), z["q"].astype(np.float64), spec, meta)
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a trained router ({exc})") from None

    @property
    def gate(self) -> dict[str, Any]:
        """What the route says about this artefact: proven or not, and the numbers behind it."""
        m = self.meta
        lo, hi = m["ci"]
        band_top = m["random_band"][1]
        why = (f"proven: APGR {m['apgr']:.3f} (95% CI {lo:.3f}–{hi:.3f}) above the random band's top {band_top:.3f} "
               f"at n={m['n']}") if m["proven"] else \
              (f"unproven: APGR {m['apgr']:.3f} (95% CI {lo:.3f}–{hi:.3f}) not above the random band's top "
               f"{band_top:.3f} at n={m['n']} labels")
        return {"proven": bool(m["proven"]), "version": m["version"], "n": m["n"], "apgr": m["apgr"], "ci": m["ci"],
                "random_band": m["random_band"], "trained_at": m["trained_at"], "why": why}


class TrainedRouter:
    """ROUTERS["trained"]: options {model: path to a trained artefact}."""

    name = "trained"
    thresholds = (0.5, 0.5)
    needs_embedding = True

    def __init__(self, options: dict[str, Any] | None = None):
        self.model = TrainedModel.load((options or {})["model"])
        self.gate = self.model.gate
        self.proven = self.gate["proven"]
        spec, w = self.model.spec, self.model.w
        at, self._parts = 0, {}
        for block in spec.blocks:  # each block's slice of the weights, to score without building the row
            width = {"embedding": EMBED_DIM, "ngrams": spec.ngram_dim, "cues": len(CUES)}[block]
            self._parts[block] = w[at:at + width]
            at += width
        if "cues" in self._parts:  # fold the standardisation into the weights and the bias
            scale = np.asarray(spec.cue_std) * np.sqrt(len(CUES))
            wc = self._parts["cues"].astype(np.float64) / scale
            self._parts["cues"] = wc.astype(np.float32)
            self._b = self.model.b - float(wc @ np.asarray(spec.cue_mean))
        else:
            self._b = self.model.b

    @classmethod
    def check(cls, route) -> None:
        if set(route.options) != {"model"}:
            raise ValueError("trained takes exactly `model` (path to a `router train --labels` artefact)")
        TrainedModel.load(route.options["model"])

    def raw(self, prompt: Prompt) -> float:
        emb = prompt.embedding
        if emb is None:  # offline scoring; the gateway hands over the request's (cache's) embedding
            emb = minilm_embed([embed_text(prompt.text)])[0]
        z = float(self._parts["embedding"] @ np.asarray(emb, np.float32)) + self._b
        if "ngrams" in self._parts:
            idx, val = sparse_features(prompt, self.model.spec.ngram_dim)
            z += float(val @ self._parts["ngrams"][idx])
            z += float(dense_features(prompt) @ self._parts["cues"])
        return z

    def score(self, prompt: Prompt) -> float:
        """The prompt's rank among the training prompts' scores, in [0, 1]."""
        q = self.model.quantiles
        return round(float(np.interp(self.raw(prompt), q, np.linspace(0, 1, len(q)))), 4)
