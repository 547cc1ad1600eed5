"""Every `hedgeway` command and subcommand, given bad input, answers with one line on stderr and a non-zero
exit: never a traceback. Each leaf command of the parser gets an unknown flag (so a command added later is
covered too); the table below adds the bad input a user really types: missing or invalid files and
configs, out-of-range flags, unknown ids. Plus the first-run fixes: a port in use, an address this host does
not have, a closed stdout, `serve --workers 2` logging, the starter config, `spend --config` without the
master key.

The commands run as real processes, several at once (each is mostly interpreter start-up)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hedgeway.cli import build_parser

HW = [sys.executable, "-m", "hedgeway"]
ENV = {k: v for k, v in os.environ.items() if k not in ("HEDGEWAY_MASTER_KEY", "OPENAI_API_KEY")}
GOOD = """auth: {master_key: os.environ/HEDGEWAY_MASTER_KEY}
ledger: {url: "sqlite:///LEDGER"}
models:
  - name: sim
    deployments: [{provider: simulated, model: s, price: {gpu_hour: "2.5", gpus: 1, tokens_per_second: 300}}]
"""
BAD = "auth: {disabled: true}\nmodels:\n  - name: a\n    deploymnets: []\n"


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [path]
    return [leaf for name, sub in subs[0].choices.items() for leaf in leaves(sub, (*path, name))]


LEAVES = leaves(build_parser())
M = "--model a --candidate b"
# command -> bad inputs (argv after the command; {d} is a scratch directory, {cfg} a valid config there)
CASES: dict[tuple[str, ...], list[str]] = {
    ("serve",): ["--config {d}/missing.yaml", "--config {d}/bad.yaml", "--config {cfg} --port 99999",
                 "--config {cfg} --workers 0", "--config {cfg} --port -1"],
    ("demo",): ["--requests many"],
    ("config", "check"): ["{d}/missing.yaml", "{d}/bad.yaml", "{d}/garbage.jsonl"],
    ("config", "init"): ["{cfg}"],
    ("spend",): ["--db sqlite:///{d}/missing.db", "--config {d}/bad.yaml", "--since yesterdayish",
                 "--by colour", "--db sqlite:///{d}/garbage.jsonl"],
    ("plan",): ["--scenario {d}/missing.yaml", "--from-ledger sqlite:///{d}/missing.db",
                "--daily-input-tokens lots", "--what-if nonsense"],
    ("router", "score"): ["--router nope --input {d}/missing.jsonl --output {d}/out.jsonl",
                          "--router heuristic --input {d}/garbage.jsonl --output {d}/out.jsonl"],
    ("router", "eval"): ["--router heuristic --data {d}/no-such-dir"],
    ("router", "train"): ["--data {d}/no-such-dir --output {d}/r.npz"],
    ("keys", "create"): ["--db sqlite:///{d}/keys.db --budget lots", "--config {d}/bad.yaml"],
    ("keys", "list"): ["--config {d}/missing.yaml", "--db postgresql://nobody@127.0.0.1:1/x"],
    ("keys", "revoke"): ["--db sqlite:///{d}/keys.db no-such-key"],
    ("keys", "rotate"): ["--db sqlite:///{d}/keys.db no-such-key"],
    ("teams", "create"): ["--db sqlite:///{d}/keys.db t1 --budget abc"],
    ("teams", "list"): ["--config {d}/bad.yaml"],
    ("teams", "update"): ["--db sqlite:///{d}/keys.db no-such-team --rpm 5"],
    ("teams", "delete"): ["--db sqlite:///{d}/keys.db no-such-team"],
    ("users", "create"): ["--db sqlite:///{d}/keys.db u1 --metadata not-json"],
    ("users", "list"): ["--config {d}/garbage.jsonl"],
    ("users", "update"): ["--db sqlite:///{d}/keys.db no-such-user --rpm 5"],
    ("users", "delete"): ["--db sqlite:///{d}/keys.db no-such-user"],
    ("canary", "start"): [f"c1 {M} --config {{d}}/bad.yaml", f"c1 {M} --config {{cfg}} --stages 5,500"],
    ("canary", "status"): ["c1 --config {d}/missing.yaml"],
    ("canary", "pause"): ["no-such --config {cfg}"],
    ("canary", "resume"): ["no-such --config {cfg}"],
    ("canary", "promote"): ["no-such --config {cfg}"],
    ("canary", "rollback"): ["no-such --config {d}/bad.yaml"],
    ("cache", "calibrate"): ["--pairs {d}/missing.jsonl --embedder none", "--pairs {d}/garbage.jsonl"],
    ("cache", "bench"): ["--insert {d}/missing.jsonl --query {d}/missing.jsonl",
                         "--insert {d}/pairs.jsonl --query {d}/pairs.jsonl --config {d}/bad.yaml"],
    ("eval", "sample"): ["--from-ledger --db sqlite:///{d}/missing.db --output {d}/o.jsonl"],
    ("eval", "run"): ["--dataset {d}/missing.jsonl --model m --name n --gateway http://127.0.0.1:9/v1",
                      "--dataset {d}/garbage.jsonl --model m --name n --gateway http://127.0.0.1:9/v1",
                      "--dataset {d}/pairs.jsonl --model m --name n --config {d}/bad.yaml"],
    ("eval", "compare"): ["base cand --db sqlite:///{d}/missing.db"],
    ("eval", "runs"): ["--config {d}/bad.yaml"],
    ("shadow", "report"): ["--config {d}/bad.yaml", "--db sqlite:///{d}/no-such-dir/x.db"],
}


KEYED = {**ENV, "HEDGEWAY_MASTER_KEY": "sk-test"}  # so a command gets past loading the config


def run(argv: list[str], timeout: float = 60, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(HW + argv, capture_output=True, text=True, env=env or ENV, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "good.yaml").write_text(GOOD.replace("LEDGER", str(d / "ledger.db")))
    (d / "bad.yaml").write_text(BAD)
    (d / "garbage.jsonl").write_text("{not json\n\x00\x01")
    (d / "pairs.jsonl").write_text('{"a": "x", "b": "y", "label": 1}\n')
    return d


@pytest.fixture(scope="module")
def results(scratch):
    """Every case of every leaf command, run at once: (command, argv) -> CompletedProcess."""
    cases = [(leaf, [*leaf, "--no-such-flag"]) for leaf in LEAVES]
    for leaf, argvs in CASES.items():
        for text in argvs:
            cases.append((leaf, [*leaf, *text.format(d=scratch, cfg=scratch / "good.yaml").split()]))
    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(lambda c: run(c[1], cwd=scratch, env=KEYED), cases))
    return [(leaf, argv, proc) for (leaf, argv), proc in zip(cases, done)]


def test_the_table_names_real_commands():
    assert set(CASES) <= set(LEAVES)


@pytest.mark.parametrize("leaf", LEAVES, ids=" ".join)
def test_bad_input_is_one_line_and_non_zero(results, leaf):
    mine = [(argv, p) for cmd, argv, p in results if cmd == leaf]
    assert mine
    for argv, proc in mine:
        where = f"hedgeway {' '.join(argv)}"
        assert proc.returncode != 0, f"{where} exited 0: {proc.stdout[-300:]}"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr}"
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"{where}: stderr is not one line:\n{proc.stderr}"


def test_serve_cannot_listen(scratch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host in ("127.0.0.1", "192.0.2.1"):  # in use; an address (TEST-NET-1) this host does not have
            env = {**ENV, "HEDGEWAY_MASTER_KEY": "sk-test"}
            proc = subprocess.run(HW + ["serve", "--config", str(scratch / "good.yaml"), "--host", host,
                                        "--port", str(port)], capture_output=True, text=True, env=env, timeout=60)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and f"cannot listen on {host}:{port}" in lines[0], proc.stderr


@pytest.mark.parametrize("argv", [["plan", "--list"], ["config", "check", "good.yaml"]])
def test_closed_stdout_is_quiet(scratch, argv):
    """`hedgeway config check … | head -1`: the reader leaves early; no BrokenPipeError, at exit neither."""
    proc = subprocess.Popen(HW + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=KEYED, cwd=scratch)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(60)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


def test_serve_workers_log_listening_and_stopped(scratch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**ENV, "HEDGEWAY_MASTER_KEY": "sk-test"}
    proc = subprocess.Popen(HW + ["serve", "--config", str(scratch / "good.yaml"), "--port", str(port),
                                  "--workers", "2"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen, deadline = [], time.monotonic() + 60
        while sum("listening" in line for line in seen) < 2 and time.monotonic() < deadline:
            seen.append(proc.stderr.readline())
        assert sum("listening" in line for line in seen) == 2, seen
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    assert rest.count("ledger flushed") == 2 and "all 2 workers stopped" in rest, rest


def test_starter_config_checks(tmp_path):
    path = tmp_path / "hedgeway.yaml"
    assert run(["config", "init", str(path)]).returncode == 0
    assert path.read_text().startswith("# Hedgeway starter config")
    proc = subprocess.run(HW + ["config", "check", str(path)], capture_output=True, text=True, timeout=60,
                          env={**ENV, "HEDGEWAY_MASTER_KEY": "sk-x", "OPENAI_API_KEY": "sk-y"})
    assert proc.returncode == 0 and "ok:" in proc.stdout and "try-me" in proc.stdout, proc.stderr
    assert run(["config", "init"]).stdout == path.read_text()  # no file: the same text on stdout


def test_spend_config_needs_no_master_key_and_rounds(scratch, tmp_path):
    from decimal import Decimal

    from hedgeway.ledger import open_store
    from hedgeway.ledger.base import Record

    ledger = tmp_path / "l.db"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD.replace("LEDGER", str(ledger)))
    store = open_store(f"sqlite:///{ledger}")
    store.migrate()
    store.write([Record(request_id="r1", ts=time.time(), endpoint="chat", model_name="sim", deployment="d",
                        provider="simulated", status=200, cost=Decimal("0.000002314814814814814814814814815"))])
    store.close()
    proc = run(["spend", "--config", str(cfg), "--json"])  # HEDGEWAY_MASTER_KEY is not set
    assert proc.returncode == 0, proc.stderr
    assert '"cost": "0.0000023148"' in proc.stdout
    check = subprocess.run(HW + ["config", "check", str(cfg)], capture_output=True, text=True, timeout=60,
                           env={**ENV, "HEDGEWAY_MASTER_KEY": "sk-x"})
    assert "$2.31481/$2.31481 per M tokens" in check.stdout, check.stdout


def test_mistyped_required_key_is_named(scratch):
    proc = run(["config", "check", str(scratch / "bad.yaml")])
    assert "models[0].deployments: Field required" in proc.stderr and "'deploymnets'" in proc.stderr
