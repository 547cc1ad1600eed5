"""Route labels in the ledger database, and the LABEL LINE they are read and written as.

A label line (`hedgeway router labels import|export`, the trainer's input):

    {"id": str, "prompt": str | "messages": [...] | "embedding": [384 floats], "strong": float, "weak": float}
    {"id": ..., "prompt" | "messages" | "embedding": ..., "strong_wins": float in [0, 1]}

The first form gives each tier's quality (any one scale per file); the second which answer is better:
1 the strong tier's, 0 the weak tier's, 0.5 a tie.

`embedding` is the L2-normalised MiniLM vector of `prompt_text(request)` (what the semantic cache embeds:
the last user turn), stored as float32. Labels from traffic keep the prompt itself only with
`ledger.log_prompts`; the embedding and the prompt's cues and hashed n-grams (`features`) always.

    read_labels(ledger_url, route) -> list of label lines (labels with a verdict and a prompt or embedding)
    LabelStore(url): put(labels), lines(route), counts(route), spent(tag, since), request(request_id)
"""

from __future__ import annotations

import base64
import math
from dataclasses import astuple, dataclass
from decimal import Decimal
from typing import Any, Iterable

import numpy as np
import orjson

from hedgeway.cache.keys import last_user_index, user_text
from hedgeway.ledger import labels as sql
from hedgeway.routing.features import cues, prompt_of

EMBEDDING_DIM = 384
NGRAM_DIM = 1 << 12  # hashed n-gram buckets, as the per-route trainer uses them


@dataclass(slots=True)
class Label:
    """One row of `route_labels` (fields in hedgeway.ledger.labels.COLUMNS order)."""

    route: str
    id: str
    ts: float
    source: str  # judge | feedback | import
    request_id: str | None = None
    key_id: str | None = None
    strong_model: str | None = None
    weak_model: str | None = None
    served: str | None = None  # the tier ("strong" | "weak") whose answer the user got
    strong: float | None = None
    weak: float | None = None
    strong_wins: float | None = None  # None: no label (unparsed verdict, judge error, one-sided score)
    verdict: str = "import"
    detail: str | None = None
    embedding: str | None = None  # base64 float32
    features: str | None = None  # JSON {"cues": {...}, "ngrams": [[index, value], ...]}
    prompt: str | None = None  # JSON: a string or a messages list


def prompt_text(body: Any) -> str:
    """The text a label's embedding is made of: the last user turn's text, as the semantic cache embeds it
    ("" when there is none)."""
    messages = body.get("messages") if isinstance(body, dict) else body
    if isinstance(messages, str):
        return messages
    messages = [m for m in messages or () if isinstance(m, dict)]
    i = last_user_index(messages)
    return (user_text(messages[i]) or "") if i >= 0 else ""


def features(body: Any) -> str:
    """The prompt's cues and hashed unigrams + bigrams (`learned.sparse_features`, NGRAM_DIM buckets), as JSON."""
    from hedgeway.routing.learned import sparse_features

    p = prompt_of(body)
    idx, val = sparse_features(p, NGRAM_DIM)
    return orjson.dumps({"cues": cues(p), "ngrams": [[int(i), round(float(v), 4)] for i, v in zip(idx, val)]}).decode()


def encode_embedding(vec: Iterable[float]) -> str:
    return base64.b64encode(np.asarray(list(vec), dtype="<f4").tobytes()).decode()


def decode_embedding(text: str) -> list[float]:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(float).tolist()


def _unit(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number")
    return float(value)


def from_line(route: str, line: Any, ts: float) -> Label:
    """A label from a label line (ValueError naming what is wrong)."""
    if not isinstance(line, dict) or not isinstance(line.get("id"), str) or not line["id"]:
        raise ValueError('each line is an object with a string "id"')
    label = Label(route, line["id"], ts, "import")
    if "prompt" in line or "messages" in line:
        prompt = line.get("prompt", line.get("messages"))
        if not isinstance(prompt, (str, list)) or ("prompt" in line and "messages" in line):
            raise ValueError('give one of "prompt" (a string) or "messages" (a list)')
        label.prompt = orjson.dumps(prompt).decode()
        label.features = features(prompt)
    if "embedding" in line:
        emb = line["embedding"]
        if not isinstance(emb, list) or len(emb) != EMBEDDING_DIM:
            raise ValueError(f'"embedding" must be a list of {EMBEDDING_DIM} numbers')
        label.embedding = encode_embedding(_unit(x, "embedding values") for x in emb)
    if label.prompt is None and label.embedding is None:
        raise ValueError('a line needs "prompt", "messages" or "embedding"')
    if "strong_wins" in line:
        label.strong_wins = _unit(line["strong_wins"], "strong_wins")
        if not 0 <= label.strong_wins <= 1:
            raise ValueError("strong_wins must lie in [0, 1]")
        label.verdict = "preference"
    elif "strong" in line and "weak" in line:
        label.strong, label.weak = _unit(line["strong"], "strong"), _unit(line["weak"], "weak")
        label.verdict = "scores"
    else:
        raise ValueError('a line needs "strong" and "weak", or "strong_wins"')
    return label


def to_line(row: dict[str, Any]) -> dict[str, Any] | None:
    """The label line of a stored label; None when it is no training example (no verdict, or no prompt
    and no embedding)."""
    scored = row["strong"] is not None and row["weak"] is not None
    if (row["strong_wins"] is None and not scored) or (row["prompt"] is None and row["embedding"] is None):
        return None
    line: dict[str, Any] = {"id": row["id"]}
    if row["prompt"] is not None:
        prompt = orjson.loads(row["prompt"])
        line["prompt" if isinstance(prompt, str) else "messages"] = prompt
    if row["embedding"] is not None:
        line["embedding"] = decode_embedding(row["embedding"])
    if scored:
        line["strong"], line["weak"] = row["strong"], row["weak"]
    else:
        line["strong_wins"] = row["strong_wins"]
    return line


class LabelStore:
    """Labels and the ledger reads labelling needs, over the ledger database (blocking: call off the loop)."""

    def __init__(self, url: str):
        from hedgeway.keys.db import open_db

        self.db = open_db(url)
        self.db.migrate()  # idempotent; the CLI may be the first to open a fresh database

    def put(self, labels: Iterable[Label]) -> None:
        self.db.write(lambda q: sql.put(q, [astuple(label) for label in labels]))

    def rows(self, route: str) -> list[dict[str, Any]]:
        return self.db.read(lambda q: sql.select(q, route))

    def lines(self, route: str) -> list[dict[str, Any]]:
        """The route's training examples, one per prompt: a request both judged and given feedback keeps
        the application's label (the same prompt twice would leak across cross-validation folds)."""
        best: dict[Any, tuple[int, dict[str, Any]]] = {}
        for row in self.rows(route):
            line = to_line(row)
            if line is not None:
                key = row["request_id"] or ("import", row["id"])
                rank = int(row["source"] == "feedback")
                if key not in best or rank >= best[key][0]:
                    best[key] = (rank, line)
        return [line for _, line in best.values()]

    def counts(self, route: str) -> dict[str, int]:
        return self.db.read(lambda q: sql.counts(q, route))

    def spent(self, tag: str, since: float) -> Decimal:
        return self.db.read(lambda q: sql.labelling_spend(q, tag, since))

    def request(self, request_id: str) -> dict[str, Any] | None:
        return self.db.read(lambda q: sql.request(q, request_id))

    def close(self) -> None:
        self.db.close()


def read_labels(ledger_url: str, route: str) -> list[dict[str, Any]]:
    """The label lines of `route` stored in the ledger database at `ledger_url`, oldest first."""
    store = LabelStore(ledger_url)
    try:
        return store.lines(route)
    finally:
        store.close()
