"""`hedgeway eval score`: score (output, reference) pairs offline — no gateway, no database.

    hedgeway eval score --scorers rouge_l,bertscore --input pairs.jsonl --output scores.jsonl [--idf]

Input: JSONL, one `{"id", "output", "reference"}` object a line (`id` a string or an integer, unique;
`reference` may be null, then scorers that need one write null); blank lines are skipped, other keys
are errors. Output: one `{"id", "<scorer>": value, ...}` line per pair, in input order; scorers with a
precision and recall (rouge_*, bertscore) add `<scorer>_p` and `<scorer>_r`; null where a scorer had
nothing to score. `--idf` weights bertscore's tokens by their idf over all the input's references.
Bad input (unreadable file, a line that is not JSON or lacks a field, an unknown scorer) exits 2 with one
line naming the file and line, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

_FIELDS = {"id", "output", "reference"}
_NEEDS_GATEWAY = {"llm_judge"}


def register(cmds: argparse._SubParsersAction) -> None:
    s = cmds.add_parser("score", help="score output/reference pairs offline (JSONL in, JSONL out)")
    s.add_argument("--scorers", required=True, help="comma-separated, e.g. rouge_l,rouge_1,rouge_2,bertscore")
    s.add_argument("--input", required=True, help='JSONL of {"id", "output", "reference"}')
    s.add_argument("--output", required=True, help="JSONL file to write the scores to")
    s.add_argument("--idf", action="store_true", help="bertscore: idf weights from the input's references")
    s.set_defaults(func=_score)


def _pair(line: str, where: str) -> dict[str, Any]:
    import orjson

    from hedgeway.errors import ConfigError

    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(where, f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(where, 'a pair must be a JSON object {"id", "output", "reference"}')
    missing, unknown = sorted(_FIELDS - data.keys()), sorted(data.keys() - _FIELDS)
    if missing or unknown:
        raise ConfigError(where, f"missing {', '.join(missing)}" if missing else f"unknown key {unknown[0]!r}")
    if not isinstance(data["id"], str | int) or isinstance(data["id"], bool) or data["id"] == "":
        raise ConfigError(f"{where}: id", "must be a non-empty string or an integer")
    if not isinstance(data["output"], str):
        raise ConfigError(f"{where}: output", "must be a string")
    if data["reference"] is not None and not isinstance(data["reference"], str):
        raise ConfigError(f"{where}: reference", "must be a string or null")
    return data


def load_pairs(path: str) -> list[dict[str, Any]]:
    """Every pair of the JSONL file, validated; ConfigError (file:line: message) on the first bad one."""
    from hedgeway.errors import ConfigError

    name = Path(path).name
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read the pairs ({getattr(exc, 'strerror', None) or exc})") from None
    pairs, seen = [], {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        pair = _pair(line, f"{name}:{n}")
        if pair["id"] in seen:
            raise ConfigError(f"{name}:{n}: id", f"duplicate id {pair['id']!r} (first on line {seen[pair['id']]})")
        seen[pair["id"]] = n
        pairs.append(pair)
    return pairs


async def score_pairs(pairs: list[dict[str, Any]], names: list[str], idf: bool) -> list[dict[str, Any]]:
    """One output row per pair: the id, each scorer's value (None when not applicable) and its parts."""
    from hedgeway.evals.dataset import Case
    from hedgeway.evals.scorers import SCORERS, Env

    env = Env(references=tuple(p["reference"] for p in pairs if p["reference"] is not None))
    settings = {"bertscore": {"idf": idf}}
    rows = []
    for pair in pairs:
        # Scorers take a golden-set case; an offline pair has no prompt, only the reference matters.
        case = Case(id=str(pair["id"]), prompt="(scored offline)", reference=pair["reference"])
        row: dict[str, Any] = {"id": pair["id"]}
        for name in names:
            score = await SCORERS[name](pair["output"], case, settings.get(name, {}), env)
            row[name] = score.value if score else None
            row.update({f"{name}_{k}": v for k, v in score.parts.items()} if score else {})
        rows.append(row)
    return rows


def _score(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from hedgeway.errors import ConfigError
    from hedgeway.evals.scorers import check

    try:
        names = check([s for s in args.scorers.split(",") if s])
        if _NEEDS_GATEWAY & set(names):
            raise ConfigError("scorers", f"{', '.join(sorted(_NEEDS_GATEWAY & set(names)))} needs a model "
                                         "through a gateway: use `hedgeway eval run`")
        pairs = load_pairs(args.input)
        rows = asyncio.run(score_pairs(pairs, names, args.idf))
        with open(args.output, "wb") as f:
            f.writelines(orjson.dumps(row) + b"\n" for row in rows)
    except (ConfigError, OSError) as exc:
        print(f"hedgeway eval score: {exc}", file=sys.stderr)
        return 2
    print(f"scored {len(rows)} pairs with {', '.join(names)} -> {args.output}", file=sys.stderr)
    return 0
