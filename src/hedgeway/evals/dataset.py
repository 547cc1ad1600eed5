"""Golden sets: JSONL, one case per line.

    {"id": "q1", "messages": [{"role": "user", "content": "2+2?"}], "reference": "4", "tags": ["math"],
     "scorers": {"regex": {"pattern": "\\b4\\b"}}}
    {"id": "q2", "prompt": "Name a prime", "tags": ["math"]}

`id` (unique in the file) and exactly one of `messages` / `prompt` are required; `reference`, `tags` and
`scorers` (scorer name -> its settings for this case, merged over the run's) are optional. Unknown keys
are errors. `load(path)` raises ConfigError naming the line and field (`set.jsonl:3: messages[0].role:
Field required`); blank lines and lines starting with `//` are skipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from hedgeway.errors import ConfigError
from hedgeway.strict import Strict


class Message(Strict):
    role: str = Field(min_length=1)
    content: Any = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class Case(Strict):
    id: str = Field(min_length=1)
    messages: list[Message] | None = Field(None, min_length=1)
    prompt: str | None = Field(None, min_length=1)
    reference: str | None = None
    tags: list[str] = Field(default_factory=list)
    scorers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_input(self) -> Case:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("exactly one of `messages` or `prompt` is required")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        """The OpenAI `messages` to send (a `prompt` is one user message)."""
        if self.messages is None:
            return [{"role": "user", "content": self.prompt}]
        return [m.model_dump(exclude_none=True) for m in self.messages]


def _where(err: dict[str, Any]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[") or "case"


def parse_line(text: str, where: str, model: type[BaseModel] = Case) -> Any:
    """One JSONL line validated as `model` (a Case by default); ConfigError naming `where` and the field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(where, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(where, f"a {model.__name__.lower()} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{where}: {_where(err)}", err["msg"]) from None


def read_jsonl(path: str | Path, model: type[BaseModel], what: str) -> list[Any]:
    """Every line of a JSONL file validated as `model` (which has an `id`, unique in the file); blank lines
    and `//` lines skipped. ConfigError (file:line: field: message) on the first bad line, a repeated id,
    an unreadable file or one with nothing in it."""
    name = Path(path).name
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(str(path), f"cannot read the {what} ({reason})") from None
    items: list[Any] = []
    seen: dict[Any, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        item = parse_line(line, f"{name}:{n}", model)
        if item.id in seen:
            raise ConfigError(f"{name}:{n}: id", f"duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = n
        items.append(item)
    if not items:
        raise ConfigError(name, f"the {what} has no {model.__name__.lower()}s")
    return items


def load(path: str | Path) -> list[Case]:
    """Every case of a JSONL golden set, validated (see read_jsonl)."""
    return read_jsonl(path, Case, "dataset")


def dump(cases: list[Case], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for case in cases:
            row = case.model_dump(exclude_none=True, exclude_defaults=True)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def from_ledger(rows: list[tuple[str, str, str]], n: int, seed: int = 0) -> list[Case]:
    """Up to `n` cases sampled (seeded) from ledger rows (request_id, model_name, prompt JSON): id = the
    request id, tags = [model name], no reference (a golden set needs one added by hand, or is scored
    by the judge). Rows whose prompt is not a list of messages (e.g. an embeddings input) are skipped."""
    picked = random.Random(seed).sample(rows, len(rows))
    cases: list[Case] = []
    for request_id, model, prompt in picked:
        if len(cases) >= n:
            break
        try:
            messages = json.loads(prompt)
            cases.append(Case.model_validate({"id": request_id, "messages": messages, "tags": [model]}))
        except (json.JSONDecodeError, ValidationError, TypeError):
            continue
    return cases
