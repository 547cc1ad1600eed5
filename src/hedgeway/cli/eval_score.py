"""`hedgeway eval score`: score (output, reference) pairs offline — no gateway, no database.

    hedgeway eval score --scorers rouge_l,bertscore --input pairs.jsonl --output scores.jsonl [--idf]

Input: JSONL, one `{"id", "output", "reference"}` object a line (`id` a string or an integer, unique;
`reference` may be null, then scorers that need one write null); blank and `//` lines are skipped,
other keys are errors. Output: one `{"id", "<scorer>": value, ...}` line per pair, in input order;
scorers with a precision and recall (rouge_*, bertscore) add `<scorer>_p` and `<scorer>_r`; null where
a scorer had nothing to score. `--idf` weights bertscore's tokens by their idf over all the input's references.
Bad input (unreadable file, a line that is not JSON or lacks a field, an unknown scorer) exits 2 with one
line naming the file and line, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

_NEEDS_GATEWAY = {"llm_judge"}


def register(cmds: argparse._SubParsersAction) -> None:
    s = cmds.add_parser("score", help="score output/reference pairs offline (JSONL in, JSONL out)")
    s.add_argument("--scorers", required=True, help="comma-separated, e.g. rouge_l,rouge_1,rouge_2,bertscore")
    s.add_argument("--input", required=True, help='JSONL of {"id", "output", "reference"}')
    s.add_argument("--output", required=True, help="JSONL file to write the scores to")
    s.add_argument("--idf", action="store_true", help="bertscore: idf weights from the input's references")
    s.set_defaults(func=_score)


def load_pairs(path: str) -> list[Any]:
    """Every pair of the JSONL file, validated (hedgeway.evals.dataset.read_jsonl's errors)."""
    from typing import Annotated

    from pydantic import Field, StrictInt, StrictStr

    from hedgeway.evals.dataset import read_jsonl
    from hedgeway.strict import Strict

    class Pair(Strict):
        id: Annotated[StrictStr, Field(min_length=1)] | StrictInt
        output: StrictStr
        reference: StrictStr | None

    return read_jsonl(path, Pair, "pairs file")


async def score_pairs(pairs: list[Any], names: list[str], idf: bool) -> list[dict[str, Any]]:
    """One output row per pair: the id, each scorer's value (None when not applicable) and its parts."""
    from hedgeway.evals.dataset import Case
    from hedgeway.evals.scorers import SCORERS, Env

    env = Env(references=tuple(p.reference for p in pairs if p.reference is not None))
    settings = {"bertscore": {"idf": idf}}
    rows = []
    for pair in pairs:
        # Scorers take a golden-set case; an offline pair has no prompt, only the reference matters.
        case = Case(id=str(pair.id), prompt="(scored offline)", reference=pair.reference)
        row: dict[str, Any] = {"id": pair.id}
        for name in names:
            score = await SCORERS[name](pair.output, case, settings.get(name, {}), env)
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
