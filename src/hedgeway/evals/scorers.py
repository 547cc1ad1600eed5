"""Scorers, chosen by name from `SCORERS`.

A scorer is `async (output, case, settings, env) -> Score | None`: a value in [0, 1] (higher is better),
None when the case gives it nothing to score against (e.g. no `reference`), which stores no row. A Score
whose `value` is None means the scorer tried and could not score (an unparseable judge reply): counted
by `compare`, never guessed. `settings` are the run's settings for that scorer with the case's merged over.

| name | score | settings |
|---|---|---|
| exact | 1 if the output equals the reference (stripped) | ignore_case (false) |
| contains | 1 if the output contains `value` (default: the reference); a list: the share found | value, ignore_case (true) |
| regex | 1 if `pattern` matches anywhere in the output | pattern (required), ignore_case (false) |
| json_valid | 1 if the output (without a ``` fence) parses as JSON | — |
| rouge_l, rouge_1, rouge_2 | ROUGE-L / -1 / -2 F-measure to the reference, as rouge-score 0.1.2 (evals/rouge.py) | tokenizer ("rouge_score" or "unicode") |
| bertscore | BERTScore F1 to the reference, as bert-score 0.3.13 on MiniLM's last layer (evals/bertscore.py) | idf (false): weights from the golden set's references |
| embedding | cosine of the mean-pooled MiniLM vectors of output and reference, floored at 0 (not BERTScore) | embedder ("minilm") |
| llm_judge | a model (through the gateway) grades 1-10 on a rubric; stored as (n-1)/9 | model, rubric |
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from hedgeway.errors import ConfigError
from hedgeway.evals.dataset import Case
from hedgeway.evals.rouge import TOKENIZERS, Rouge, rouge_l, rouge_n
from hedgeway.evals.store import Score

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_JUDGE_SCORE = re.compile(r"^\s*score\s*:\s*(10|[1-9])\s*(?:/\s*10)?\s*$", re.IGNORECASE)

DEFAULT_RUBRIC = """You are grading an AI assistant's answer.

Question:
{question}

Reference answer (may be empty):
{reference}

Assistant's answer:
{answer}

Rate how correct, complete and helpful the assistant's answer is, from 1 (useless or wrong) to 10
(perfect). Reply with one short justification line, then a last line exactly of the form `Score: N`."""


@dataclass(slots=True)
class Env:
    """What scorers that call out need: the gateway client (AsyncOpenAI) and the default judge model; and
    the golden set's references (bertscore's idf weights are computed over them)."""

    client: Any = None
    judge_model: str | None = None
    references: tuple[str, ...] = ()


Scorer = Callable[[str, Case, dict[str, Any], Env], Awaitable["Score | None"]]


async def exact(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    if case.reference is None:
        return None
    a, b = output.strip(), case.reference.strip()
    if s.get("ignore_case"):
        a, b = a.lower(), b.lower()
    return Score("exact", float(a == b))


async def contains(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    value = s.get("value", case.reference.strip() if case.reference is not None else None)
    if value is None:
        return None
    wanted = [value] if isinstance(value, str) else list(value)
    hay = output.lower() if s.get("ignore_case", True) else output
    found = [w for w in wanted if (w.lower() if s.get("ignore_case", True) else w) in hay]
    return Score("contains", len(found) / len(wanted), f"{len(found)}/{len(wanted)} found")


async def regex(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    if "pattern" not in s:
        return None
    try:
        pattern = re.compile(s["pattern"], re.IGNORECASE if s.get("ignore_case") else 0)
    except re.error as exc:
        raise ConfigError(f"{case.id}: scorers.regex.pattern", f"invalid regular expression ({exc})") from None
    return Score("regex", float(pattern.search(output) is not None))


async def json_valid(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    m = _FENCE.match(output)
    try:
        json.loads(m.group(1) if m else output)
    except json.JSONDecodeError as exc:
        return Score("json_valid", 0.0, f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    return Score("json_valid", 1.0)


def _rouge(name: str, measure: Callable[[list[str], list[str]], Rouge]) -> Scorer:
    """A ROUGE scorer: `measure(reference tokens, output tokens)`, the F-measure as the value."""
    async def score(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
        if case.reference is None:
            return None
        if s.get("use_stemmer"):
            raise ConfigError(f"scorers.{name}.use_stemmer", "stemming is not implemented (scores match "
                                                             "rouge-score's default, use_stemmer=False)")
        split = TOKENIZERS.get(s.get("tokenizer", "rouge_score"))
        if split is None:
            raise ConfigError(f"scorers.{name}.tokenizer", f"one of {', '.join(TOKENIZERS)}")
        r = measure(split(case.reference), split(output))
        return Score(name, r.fmeasure, f"P {r.precision:.4f} R {r.recall:.4f}", {"p": r.precision, "r": r.recall})
    return score


@lru_cache(maxsize=1)
def _bert_scorer():
    from hedgeway.evals.bertscore import BertScorer  # lazily: onnxruntime loads only when a run uses it

    try:
        return BertScorer()
    except RuntimeError as exc:  # the `semantic` extra is not installed
        raise ConfigError("scorers.bertscore", str(exc)) from None


@lru_cache(maxsize=4)
def _idf(references: tuple[str, ...]) -> dict[int, float]:
    return _bert_scorer().idf_weights(references)


async def bertscore(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    if case.reference is None:
        return None
    scorer = _bert_scorer()
    if s.get("idf") and not env.references:
        raise ConfigError("scorers.bertscore.idf", "idf weights need the golden set's references (none given)")
    idf = await scorer.model.in_worker(_idf, env.references) if s.get("idf") else None  # tokenises the set once
    p, r, f = await scorer.model.in_worker(scorer.score, output, case.reference, idf)
    return Score("bertscore", f, f"P {p:.4f} R {r:.4f}; {scorer.describe(idf is not None)}", {"p": p, "r": r})


def _embedder(name: str):
    """The cache's offline embedder `name` from hedgeway.embedders.EMBEDDERS; ConfigError if unknown or
    if its optional extra is not installed."""
    from hedgeway.embedders import EMBEDDERS  # lazily: onnxruntime loads only when a run scores embeddings

    factory = EMBEDDERS.get(name)
    if factory is None:
        raise ConfigError("scorers.embedding.embedder", f"unknown embedder {name!r} (one of {', '.join(EMBEDDERS)})")
    try:  # the registry takes the cache's config section; only these two fields are read
        return factory(SimpleNamespace(embedder=name, embedding_model=None), None)
    except (RuntimeError, ValueError) as exc:  # e.g. the `semantic` extra is not installed
        raise ConfigError("scorers.embedding", str(exc)) from None


async def embedding(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    if case.reference is None:
        return None
    vecs = await _embedder(s.get("embedder", "minilm")).embed([output, case.reference])  # L2-normalised rows
    cos = float(vecs[0] @ vecs[1])
    return Score("embedding", max(0.0, min(1.0, cos)), f"cosine {cos:.4f}")


def parse_judge(reply: str) -> int | None:
    """The 1-10 grade on the reply's last non-empty line (`Score: N` or `Score: N/10`), else None."""
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    m = _JUDGE_SCORE.match(lines[-1]) if lines else None
    return int(m.group(1)) if m else None


async def llm_judge(output: str, case: Case, s: dict[str, Any], env: Env) -> Score | None:
    model = s.get("model", env.judge_model)
    if env.client is None or not model:
        raise ConfigError("scorers.llm_judge.model", "the judge needs a model: --judge-model NAME or a "
                                                     "`model` setting")
    question = "\n".join(f"{m['role']}: {m.get('content')}" for m in case.chat_messages())
    # Plain replacement, not str.format: a rubric may well contain other braces (JSON examples).
    prompt = s.get("rubric", DEFAULT_RUBRIC)
    for name, value in (("{question}", question), ("{reference}", case.reference or ""), ("{answer}", output)):
        prompt = prompt.replace(name, value)
    try:
        resp = await env.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], temperature=0)
        reply = resp.choices[0].message.content or ""
    except Exception as exc:  # noqa: BLE001 - the judge's own failure: counted as unscored, the run goes on
        return Score("llm_judge", None, f"judge call failed: {type(exc).__name__}")
    grade = parse_judge(reply)
    if grade is None:
        return Score("llm_judge", None, "unparseable judge reply: " + reply[-200:])
    return Score("llm_judge", (grade - 1) / 9, f"{grade}/10")


SCORERS: dict[str, Scorer] = {
    "exact": exact, "contains": contains, "regex": regex, "json_valid": json_valid,
    "rouge_l": _rouge("rouge_l", rouge_l), "rouge_1": _rouge("rouge_1", lambda t, p: rouge_n(t, p, 1)),
    "rouge_2": _rouge("rouge_2", lambda t, p: rouge_n(t, p, 2)), "bertscore": bertscore,
    "embedding": embedding, "llm_judge": llm_judge,
}


def check(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise ConfigError("scorers", f"unknown scorer(s) {', '.join(unknown)}; known: {', '.join(SCORERS)}")
    return names


async def score_case(output: str, case: Case, names: list[str], settings: dict[str, dict[str, Any]],
                     env: Env) -> list[Score]:
    """Every applicable scorer's Score: the run's `names` plus any the case configures."""
    out = []
    for name in check(list(dict.fromkeys([*names, *case.scorers]))):
        merged = {**settings.get(name, {}), **case.scorers.get(name, {})}
        score = await SCORERS[name](output, case, merged, env)
        if score is not None:
            out.append(score)
    return out
