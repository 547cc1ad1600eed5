"""`hedgeway router labels import | export`: a route's labels in and out of the ledger database.

    hedgeway router labels import FILE --db DB --route NAME     label lines (JSONL) into the route's labels;
                                                               a line with the same id replaces the stored one
    hedgeway router labels export --db DB --route NAME [--output FILE]   label lines, oldest first (stdout)

A label line: {"id", "prompt" | "messages" | "embedding", "strong", "weak"} or {..., "strong_wins"}
(see hedgeway.routing.label_store). Import stores all lines or none: a bad line is reported as FILE:LINE.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def import_labels(args) -> int:
    import orjson

    from hedgeway.routing.label_store import LabelStore, from_line

    labels, now = [], time.time()
    with open(args.file, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                labels.append(from_line(args.route, orjson.loads(raw), now))
            except (ValueError, orjson.JSONDecodeError) as exc:
                print(f"{args.file}:{lineno}: {exc}", file=sys.stderr)
                return 2
    store = LabelStore(args.db)
    try:
        store.put(labels)
    finally:
        store.close()
    print(f"imported {len(labels)} label(s) into route {args.route}", file=sys.stderr)
    return 0


def export_labels(args) -> int:
    import orjson

    from hedgeway.routing.label_store import LabelStore

    store = LabelStore(args.db)
    try:
        lines, counts = store.lines(args.route), store.counts(args.route)
    finally:
        store.close()
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    try:
        for line in lines:
            out.write(orjson.dumps(line) + b"\n")
    finally:
        out.flush() if out is sys.stdout.buffer else out.close()
    left = sum(counts.values()) - len(lines)
    by = ", ".join(f"{v} {n}" for v, n in sorted(counts.items()))
    print(f"exported {len(lines)} label(s) of route {args.route} ({by or 'none stored'}; {left} without a "
          "verdict or features left out)", file=sys.stderr)
    return 0


def train_from_ledger(args) -> int:
    """`hedgeway router train --from-ledger DB --route NAME`: the route's stored labels through the same
    trainer and report as `--labels FILE`."""
    from hedgeway.cli.router_labels import train_and_report
    from hedgeway.routing.label_store import read_labels

    if not args.route:
        print("error: --from-ledger needs --route NAME (the routed name whose labels to train on)", file=sys.stderr)
        return 2
    return train_and_report(args, read_labels(args.from_ledger, args.route))


def register(sub: Any) -> None:
    """Adds `labels import|export` under `hedgeway router`."""
    p = sub.add_parser("labels", help="import or export a route's labels (ledger database)", description=__doc__)
    actions = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    i = actions.add_parser("import", help="store label lines (JSONL) as the route's labels")
    i.add_argument("file", help="JSONL label lines")
    e = actions.add_parser("export", help="write the route's labels as label lines (JSONL)")
    e.add_argument("--output", default="-", help="file to write (default: standard output)")
    for q, fn in ((i, import_labels), (e, export_labels)):
        q.add_argument("--db", required=True, help="ledger URL (sqlite:///… or postgresql://…)")
        q.add_argument("--route", required=True, help="the routed model name the labels belong to")
        q.set_defaults(func=fn)
