"""`hedgeway demo --router-loop`: offline, simulated tiers whose quality depends on the kind of prompt and a
position-biased simulated judge; the gateway's own labelling path turns the traffic into labels that say
where the cheap tier falls short, and the report says so next to the simulation's truth and the cost."""

from __future__ import annotations

import json
import re

from hedgeway.cli import main
from hedgeway.cli.demo_loop import KINDS, prompts
from hedgeway.routing.label_store import read_labels


def test_the_loop_demo_labels_every_request_and_the_labels_track_the_simulated_quality(tmp_path, capsys):
    db = f"sqlite:///{tmp_path}/loop.db"
    assert main(["demo", "--router-loop", "--requests", "72", "--concurrency", "8", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "simulated judge" in out
    counts = dict(re.findall(r"(strong|weak|tie|split|unparsed|error) (\d+)", out.split("labels: ")[1].split("\n")[0]))
    assert sum(map(int, counts.values())) == 72 and int(counts["split"]) > 0  # the biased judge, neutralised
    wins = {kind: float(m) for kind, m in re.findall(r"^(\w[\w ]*?)\s+\d+\s+([01]\.\d\d)\s", out, re.MULTILINE)}
    assert set(wins) == set(KINDS)
    assert min(wins["code"], wins["maths"]) > max(wins["small talk"], wins["facts"]) + 0.15
    assert re.search(r"Labelling: 0\.\d+ USD", out) and re.search(r"route auto`: \d+ labels, APGR 0\.\d+", out)
    assert re.search(r"\d+% less\), mean simulated quality 0\.\d+ against", out)
    lines = read_labels(db, "auto")
    assert len(lines) == 72 - int(counts["unparsed"]) and all(len(ln["embedding"]) == 384 for ln in lines)
    # the stored labels go straight to the route's trainer
    assert main(["router", "train", "--from-ledger", db, "--route", "auto", "--json", "--permutations", "20",
                 "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == len(lines) and {"apgr", "ci", "random_band", "proven"} <= set(report)
    assert main(["router", "train", "--from-ledger", db]) == 2 and "--route" in capsys.readouterr().err


def test_prompts_are_distinct_and_take_the_kinds_in_turn():
    ps = prompts(300)
    assert len({p for _, p in ps}) == 300 and [k for k, _ in ps[:6]] == list(KINDS)
