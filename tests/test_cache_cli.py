"""`hedgeway cache calibrate` and `hedgeway cache bench` on small, self-made data."""

from __future__ import annotations

import json

import pytest
import yaml

from hedgeway.cli import main

pytest.importorskip("onnxruntime")

PAIRS = [("How do I reset my password?", "How can I reset my password?", 1),
         ("What is the capital of France?", "What's France's capital city?", 1),
         ("How do I cancel my order?", "How can I cancel an order I placed?", 1),
         ("How do I reset my password?", "How do I reset my router?", 0),
         ("What is the capital of France?", "What is the capital of Spain?", 0),
         ("Best pizza in Rome?", "How tall is Mount Everest?", 0)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_calibrate_prints_table_and_writes_threshold(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"a": a, "b": b, "label": y} for a, b, y in PAIRS])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: []\n")
    rc = main(["cache", "calibrate", "--pairs", pairs, "--target-precision", "0.97", "--write-config", str(cfg),
               "--plot", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "threshold precision  recall" in out and "pairs: 6 (3 labelled duplicates)" in out
    line = next(x for x in out.splitlines() if x.startswith("threshold 0."))
    t = float(line.split()[1].rstrip(":"))
    assert rc == 0 and 0.5 <= t < 1 and "precision 1.0000" in line
    assert yaml.safe_load(cfg.read_text())["cache"]["threshold"] == t
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_bench_replays_inserts_and_queries(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "prompt": "How do I reset my password?"},
                                           {"id": "x", "prompt": [{"role": "user", "content": "Where is my parcel?"}]}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "q1", "prompt": "How can I reset my password?"},
                                           {"id": "q2", "prompt": "Where is my parcel?"},
                                           {"id": "q3", "prompt": "What is the boiling point of water?"}])
    out = tmp_path / "r.jsonl"
    assert main(["cache", "bench", "--insert", a, "--query", b, "--output", str(out)]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["q1"]["hit"] and rows["q1"]["matched_id"] == 1 and 0.95 <= rows["q1"]["similarity"] < 1
    assert rows["q2"] == {"id": "q2", "hit": True, "matched_id": "x", "similarity": 1.0}
    assert rows["q3"] == {"id": "q3", "hit": False, "matched_id": None, "similarity": None}
    assert "hit rate 0.6667" in capsys.readouterr().out


def test_bench_inserts_every_line_near_duplicates_included(tmp_path):
    # "could" and "do" score ≈ 0.99: the second line is a semantic hit on the first, and is still its own
    # entry, so a query of its exact text gets its id (an identical line keeps the first line's entry)
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "prompt": "How do I reset my password?"},
                                           {"id": 2, "prompt": "How could I reset my password?"},
                                           {"id": 3, "prompt": "How do I reset my password?"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "q", "prompt": "How could I reset my password?"},
                                           {"id": "r", "prompt": "How do I reset my password?"}])
    out = tmp_path / "r.jsonl"
    assert main(["cache", "bench", "--insert", a, "--query", b, "--output", str(out)]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert (rows["q"]["matched_id"], rows["q"]["similarity"]) == (2, 1.0)
    assert (rows["r"]["matched_id"], rows["r"]["similarity"]) == (1, 1.0)
