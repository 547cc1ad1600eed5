"""`hedgeway keys|teams|users` and `hedgeway spend --by user --period …` on a temporary SQLite ledger."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import yaml

from hedgeway.cli import main
from hedgeway.keys import KeyRing, KeyStore
from hedgeway.ledger import Record, open_store


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path}/cli.db"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_create_list_rotate_revoke(db, capsys, tmp_path):
    assert run(capsys, "teams", "create", "search", "--db", db, "--budget", "100/monthly", "--rpm", "60")[0] == 0
    code, out, err = run(capsys, "keys", "create", "--db", db, "--team", "search", "--name", "ci",
                         "--models", "gpt-4o-mini", "--budget", "2.5/daily", "--expires", "30d")
    assert code == 0 and "only time" in err
    key_id, secret = out.split()
    assert secret.startswith("sk-hw-")
    code, out, _ = run(capsys, "keys", "list", "--db", db)
    assert code == 0 and key_id in out and "search" in out and "active" in out and secret not in out
    assert secret[:10] + "…" in out
    [listed] = json.loads(run(capsys, "keys", "list", "--db", db, "--json")[1])
    assert listed["models"] == ["gpt-4o-mini"] and listed["budgets"] == [{"limit": "2.5", "period": "daily"}]
    assert "key" not in listed
    code, out, _ = run(capsys, "keys", "rotate", key_id, "--db", db, "--json")
    new_secret = json.loads(out)["key"]
    assert code == 0 and new_secret != secret
    store = KeyStore(db)
    ring = KeyRing(store, poll_interval=60)
    try:
        assert ring.lookup(hashlib.sha256(new_secret.encode()).digest()).team == "search"
    finally:
        ring.close()
    code, out, _ = run(capsys, "keys", "revoke", key_id, "--db", db)
    assert code == 0 and out.startswith(f"revoked {key_id}")
    assert "revoked" in run(capsys, "keys", "list", "--db", db)[1]
    # --config takes the ledger URL from a gateway config
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"auth": {"master_key": "m"}, "ledger": {"url": db},
                                   "models": [{"name": "sim", "deployments": [{"provider": "simulated",
                                                                              "model": "s"}]}]}))
    assert key_id in run(capsys, "keys", "list", "--config", str(cfg))[1]


def test_errors_are_one_line_and_exit_1(db, capsys):
    code, _, err = run(capsys, "keys", "create", "--db", db, "--team", "ghost")
    assert code == 1 and "no team 'ghost'" in err
    code, _, err = run(capsys, "keys", "revoke", "key_nope", "--db", db)
    assert code == 1 and "no key 'key_nope'" in err
    code, _, err = run(capsys, "keys", "create", "--db", db, "--budget", "10/hourly")
    assert code == 1 and "budgets[0].period" in err
    code, _, err = run(capsys, "keys", "list", "--db", "mysql://root:hunter2@db/x")
    assert code == 1 and "hunter2" not in err


def test_teams_and_users(db, capsys):
    assert run(capsys, "users", "create", "ann", "--db", db, "--tpm", "1000")[0] == 0
    assert run(capsys, "teams", "create", "red", "--db", db, "--models", "a,b")[0] == 0
    code, out, _ = run(capsys, "teams", "update", "red", "--db", db, "--budget", "9/weekly", "--json")
    team = json.loads(out)
    assert code == 0 and team["budgets"] == [{"limit": "9", "period": "weekly"}] and team["models"] == ["a", "b"]
    out = run(capsys, "teams", "list", "--db", db)[1]
    assert out.splitlines()[1].split() == ["red", "9/weekly", "-", "a,b"]
    assert json.loads(run(capsys, "users", "list", "--db", db, "--json")[1])[0]["limits"]["tpm"] == 1000
    assert run(capsys, "teams", "delete", "red", "--db", db)[0] == 0
    assert run(capsys, "teams", "list", "--db", db)[1].strip() == "none"


def test_spend_by_user_and_period_is_exact(db, capsys):
    store = KeyStore(db)
    store.migrate()
    store.close()
    assert run(capsys, "users", "create", "ann", "--db", db)[0] == 0
    k_ann = run(capsys, "keys", "create", "--db", db, "--user", "ann")[1].split()[0]
    k_none = run(capsys, "keys", "create", "--db", db)[1].split()[0]
    t = lambda *d: datetime(*d, 12, tzinfo=timezone.utc).timestamp()  # noqa: E731
    rows = [(t(2024, 4, 30), k_ann, "0.1"), (t(2024, 5, 1), k_ann, "0.1"), (t(2024, 5, 6), k_ann, "0.1"),
            (t(2024, 5, 6), k_none, "0.000000075"), (t(2024, 5, 7), "master", "1")]
    ledger = open_store(db)
    ledger.write([Record(request_id=f"r{i}", ts=ts, endpoint="chat", model_name="m", deployment="d",
                         provider="openai", status=200, key_id=k, cost=Decimal(c)) for i, (ts, k, c) in enumerate(rows)])
    ledger.close()

    def spend(*argv):
        code, out, _ = run(capsys, "spend", "--db", db, "--json", *argv)
        assert code == 0
        return [(r.get("period"), r.get("user"), r["requests"], r["cost"]) for r in json.loads(out)]

    assert spend("--by", "user", "--period", "total") == [("total", None, 2, "1.000000075"), ("total", "ann", 3, "0.3")]
    assert spend("--by", "user", "--period", "month") == [
        ("2024-04", "ann", 1, "0.1"), ("2024-05", None, 2, "1.000000075"), ("2024-05", "ann", 2, "0.2")]
    assert spend("--by", "", "--period", "week") == [
        ("2024-04-29", None, 2, "0.2"), ("2024-05-06", None, 3, "1.100000075")]  # weeks start on Monday
    code, out, _ = run(capsys, "spend", "--db", db, "--by", "user", "--period", "month")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["period", "user", "requests"]
    assert out.splitlines()[-1].split() == ["total", "5", "0", "0", "0", "0", "1.300000"]


def test_cli_revocation_stops_two_serve_processes_within_a_second(tmp_path, upstream, capsys, monkeypatch):
    """Two `hedgeway serve` processes on one SQLite ledger; keys made and revoked by the CLI meanwhile."""
    import signal
    import subprocess

    import openai

    from test_cli import ENV, HW, free_port, write_config

    for name in ("HW_MASTER", "HW_UPSTREAM_KEY"):  # the in-process CLI reads the same config
        monkeypatch.setenv(name, ENV[name])
    ledger = f"sqlite:///{tmp_path}/shared.db"
    cfg = write_config(tmp_path, upstream.base_url, ledger)
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen(HW + ["--log-level", "DEBUG", "serve", "--config", cfg, "--port", str(p)], env=ENV,
                              stderr=subprocess.PIPE, text=True) for p in ports]

    def status(port: int, key: str) -> int:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=5)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    def until(port: int, key: str, want: int, within: float) -> None:
        start = time.monotonic()
        while True:
            try:
                if status(port, key) == want:
                    return
            except openai.APIConnectionError:  # not listening yet
                pass
            assert time.monotonic() - start < within, (port, want)
            time.sleep(0.02)

    try:
        code, out, _ = run(capsys, "keys", "create", "--config", cfg)
        assert code == 0
        key_id, secret = out.split()
        for port in ports:
            until(port, secret, 200, 30)  # start-up, then the key works on both
        assert run(capsys, "keys", "revoke", key_id, "--config", cfg)[0] == 0
        for port in ports:  # both replicas stop accepting it (how fast: bench/key_revocation.py)
            until(port, secret, 401, 30)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        logs = "".join(proc.communicate(timeout=60)[1] for proc in procs)
    assert all(proc.returncode == 0 for proc in procs), logs
    assert "hedgeway listening" in logs and secret not in logs and secret[6:] not in logs
