"""Labelled simulators for the router-loop demo (`hedgeway demo --router-loop`). Nothing here is a real
model, and every answer says so (model id `simulated/<model>`, header `x-hedgeway-simulated: true`).

* `simulated-quality`: the `simulated` model, whose answer carries a quality in [0, 1] that depends on the
  kind of prompt: the first of `quality: [{match: REGEX, q: 0.35}, …]` whose regex finds the last user
  turn, else `default_quality`, plus a per-prompt offset within ±`noise` (the same prompt, the same
  quality). The answer starts with "(simulated answer, quality 0.62)".
* `simulated-judge`: a pairwise judge of such answers, in the layout of hedgeway.routing.judge. It reads the
  two qualities and prefers the higher one after adding its own per-prompt error (±`noise`); a difference
  under `tie_margin` is a tie ([[C]]). `first_bias` is the share of replies that say [[A]] whatever the
  answers (a judge biased to the first position), `unparsed_rate` the share that ramble without a verdict.
"""

from __future__ import annotations

import hashlib
import random
import re

import orjson
from pydantic import BaseModel, ConfigDict, Field

from hedgeway.providers.simulated import SimSettings, SimulatedProvider, _text
from hedgeway.types import ChatRequest, UpstreamReply

_QUALITY = re.compile(r"\(simulated answer, quality (\d\.\d+)\)")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: str
    q: float = Field(ge=0, le=1)


class QualitySettings(SimSettings):
    quality: list[Rule] = []
    default_quality: float = Field(0.8, ge=0, le=1)
    noise: float = Field(0.05, ge=0, le=1)


class JudgeSettings(SimSettings):
    noise: float = Field(0.1, ge=0, le=1)
    tie_margin: float = Field(0.05, ge=0, le=1)
    first_bias: float = Field(0.0, ge=0, le=1)
    unparsed_rate: float = Field(0.0, ge=0, le=1)


def _rng(*parts: object) -> random.Random:
    return random.Random(hashlib.blake2b(orjson.dumps(parts), digest_size=8).digest())


def _last_user(request: ChatRequest) -> str:
    users = [m for m in request.body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


class _Rewriting(SimulatedProvider):
    """A simulated model whose answer text is `self.answer(request, text)` instead of its plain words."""

    def answer(self, request: ChatRequest, text: str) -> str:
        raise NotImplementedError

    async def chat(self, request: ChatRequest) -> UpstreamReply:
        reply = await super().chat(request)
        body = orjson.loads(reply.body)
        for choice in body["choices"]:
            choice["message"]["content"] = self.answer(request, choice["message"]["content"])
        return UpstreamReply(orjson.dumps(body), reply.usage, reply.headers)


class SimulatedQualityProvider(_Rewriting):
    settings_model = QualitySettings

    def __init__(self, deployment):
        super().__init__(deployment)
        self.q = QualitySettings(**deployment.settings)
        self.rules = [(re.compile(r.match, re.IGNORECASE), r.q) for r in self.q.quality]

    def quality(self, prompt: str) -> float:
        """This model's (simulated) quality on `prompt`: its kind's, plus the prompt's fixed offset."""
        base = next((q for rx, q in self.rules if rx.search(prompt)), self.q.default_quality)
        offset = _rng(self.deployment.model, prompt).uniform(-self.q.noise, self.q.noise)
        return min(1.0, max(0.0, base + offset))

    def answer(self, request: ChatRequest, text: str) -> str:
        return f"(simulated answer, quality {self.quality(_last_user(request)):.2f}) {text}"


class SimulatedJudgeProvider(_Rewriting):
    settings_model = JudgeSettings

    def __init__(self, deployment):
        super().__init__(deployment)
        self.j = JudgeSettings(**deployment.settings)

    def answer(self, request: ChatRequest, text: str) -> str:
        prompt = _last_user(request)
        rng = _rng(self.deployment.model, prompt)
        found = [_QUALITY.search(prompt.split(f"[The start of assistant {side}'s answer]")[-1]) for side in "AB"]
        if rng.random() < self.j.unparsed_rate or None in found:
            return "(simulated judge) Both answers have their merits; it depends on what the user values."
        if rng.random() < self.j.first_bias:
            return "(simulated judge) The first answer reads well.\n[[A]]"
        diff = float(found[0].group(1)) - float(found[1].group(1)) + rng.uniform(-self.j.noise, self.j.noise)
        verdict = "C" if abs(diff) < self.j.tie_margin else ("A" if diff > 0 else "B")
        return f"(simulated judge) Compared the two answers' simulated quality.\n[[{verdict}]]"
