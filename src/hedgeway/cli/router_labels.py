"""`hedgeway router train --labels FILE`: a route's own router from its own labels, with its proof.

    hedgeway router train --labels labels.jsonl [--cv 5] [--repeats 3] [--permutations 100] [--seed 0]
        [--oof-output oof.jsonl] [--output route.npz] [--version V] [--json]

Label lines: see `hedgeway.routing.labelled`. Prints a summary (or, with --json, ONE JSON object on
stdout: n, apgr, ci, random_band, proven, learning_curve, …); --oof-output writes one {"id", "score"}
line per label (its out-of-fold score, higher = needs the strong model); --output the artefact for
`router: trained`. Exit 0 whether or not the router came out proven (the report says which); 2 for
unusable labels.
"""

from __future__ import annotations

import sys
from typing import Any


def add_arguments(t: Any) -> None:
    t.add_argument("--labels", help="JSONL label lines {id, prompt|messages|embedding, strong, weak | strong_wins}")
    t.add_argument("--cv", type=int, default=5, help="--labels: cross-validation folds (default 5)")
    t.add_argument("--repeats", type=int, default=3, help="--labels: CV repeats with new folds (default 3)")
    t.add_argument("--permutations", type=int, default=100,
                   help="--labels: shuffled-label runs that measure the random band (default 100)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--oof-output", help="--labels: write {id, score} out-of-fold scores here")
    t.add_argument("--json", action="store_true", help="--labels: print the report as one JSON object")


def read_label_file(path: str) -> list[dict]:
    import orjson

    lines = []
    with (sys.stdin.buffer if path == "-" else open(path, "rb")) as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                try:
                    lines.append(orjson.loads(raw))
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
    return lines


def train_labels(args: Any) -> int:
    try:
        lines = read_label_file(args.labels)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return train_and_report(args, lines)


def train_and_report(args: Any, lines: list[dict]) -> int:
    """Train on label lines from any source (a file, the ledger's label store) and write what the flags
    ask for: --output, --oof-output, --json or a summary."""
    import orjson

    from hedgeway.routing.proof import train_from_labels

    try:
        report, model, oof = train_from_labels(lines, cv=args.cv, repeats=args.repeats,
                                               permutations=args.permutations, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        model.save(args.output, args.version)
    if args.oof_output:
        with open(args.oof_output, "wb") as f:
            f.writelines(orjson.dumps(row) + b"\n" for row in oof)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
        return 0
    lo, hi = report["ci"]
    blo, bhi = report["random_band"]
    curve = " / ".join(f"{p['n']}: {p['apgr']:.3f}" for p in report["learning_curve"])
    print(f"{report['n']} labels, {args.cv}-fold CV × {args.repeats}: APGR {report['apgr']:.3f} "
          f"(95% CI {lo:.3f}–{hi:.3f}); random band {blo:.3f}–{bhi:.3f} ({args.permutations} shuffles)")
    print(f"proven: {'yes' if report['proven'] else 'no'}; learning curve {curve}; {report['seconds']} s")
    if args.output:
        print(f"artefact {args.output} (version {args.version}"
              f"{'' if report['proven'] else ', unproven: routes using it send everything to their default tier'})")
    return 0
