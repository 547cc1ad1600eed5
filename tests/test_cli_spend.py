"""`hedgeway spend` on a ledger written here: table and JSON output, filters, and its error paths."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from hedgeway.cli import main
from hedgeway.cli.spend import exact, parse_by, parse_since
from hedgeway.ledger import Record, open_store

DAY1 = datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp()
DAY2 = DAY1 + 86400


def rec(i: int, **kw) -> Record:
    base = dict(request_id=f"req-{i}", ts=DAY1 + i, endpoint="chat", model_name="gpt-4o-mini",
                deployment="openai-mini", provider="openai", status=200, prompt_tokens=100, completion_tokens=10)
    base.update(kw)
    return Record(**base)


@pytest.fixture
def ledger(tmp_path):
    url = f"sqlite:///{tmp_path}/spend.db"
    store = open_store(url)
    store.migrate()
    store.write([
        rec(1, cost=Decimal("0.1"), key_id="k1"),
        rec(2, cost=Decimal("0.1"), key_id="k1"),
        rec(3, cost=Decimal("0.1"), key_id="k2", status=502),
        rec(4, model_name="claude-haiku", cost=Decimal("0.000000075"), prompt_tokens=1, completion_tokens=0),
        rec(5, ts=DAY2, model_name="claude-haiku", cost=Decimal("1.2345678"), team="red"),
    ])
    store.close()
    return url


def spend(capsys, *argv) -> tuple[int, str, str]:
    code = main(["spend", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_is_exact(ledger, capsys):
    code, out, _ = spend(capsys, "--db", ledger, "--by", "model", "--json")
    assert code == 0
    rows = {r["model_name"]: r for r in json.loads(out)}
    assert rows["gpt-4o-mini"]["cost"] == "0.3"  # 3 x 0.1, not 0.30000000000000004
    assert rows["gpt-4o-mini"]["requests"] == 3 and rows["gpt-4o-mini"]["errors"] == 1
    assert rows["gpt-4o-mini"]["prompt_tokens"] == 300 and rows["gpt-4o-mini"]["completion_tokens"] == 30
    assert rows["claude-haiku"]["cost"] == "1.234567875"
    assert set(rows["claude-haiku"]) == {"model_name", "requests", "errors", "estimated", "prompt_tokens",
                                         "completion_tokens", "cost", "latency_p50_ms"}


def test_table_default_groups_by_day_and_model(ledger, capsys):
    code, out, _ = spend(capsys, "--db", ledger)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["day", "model", "requests", "errors", "estimated", "prompt", "tokens", "completion",
                                "tokens", "cost", "(USD)"]
    body = [line.split() for line in lines if line[:1].isdigit()]
    assert body == [
        ["2024-05-01", "claude-haiku", "1", "0", "0", "1", "0", "0.000000"],
        ["2024-05-01", "gpt-4o-mini", "3", "1", "0", "300", "30", "0.300000"],
        ["2024-05-02", "claude-haiku", "1", "0", "0", "100", "10", "1.234568"],
    ]
    assert lines[-1].split() == ["total", "5", "1", "0", "401", "40", "1.534568"]
    # right-aligned numbers: every non-rule line ends in the same column
    assert len({len(line) for line in lines if not line.startswith("-")}) == 1


def test_by_key_and_team_show_missing_values_as_dashes(ledger, capsys):
    code, out, _ = spend(capsys, "--db", ledger, "--by", "key,team")
    assert code == 0
    body = [line.split()[:3] for line in out.splitlines()[2:-2]]
    assert body == [["-", "-", "1"], ["-", "red", "1"], ["k1", "-", "2"], ["k2", "-", "1"]]


def test_since_filters(ledger, capsys):
    code, out, _ = spend(capsys, "--db", ledger, "--since", "2024-05-02", "--by", "day", "--json")
    assert code == 0
    assert [(r["day"], r["requests"], r["cost"]) for r in json.loads(out)] == [("2024-05-02", 1, "1.2345678")]
    code, out, _ = spend(capsys, "--db", ledger, "--since", "1h")  # everything is from 2024
    assert code == 0 and out.strip() == "no requests recorded in that period"
    code, out, _ = spend(capsys, "--db", ledger, "--since", "1h", "--json")
    assert json.loads(out) == []


def test_no_grouping_prints_one_total(ledger, capsys):
    code, out, _ = spend(capsys, "--db", ledger, "--by", "", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["requests"] == 5 and row["cost"] == "1.534567875"


def test_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path, capsys):
    path = tmp_path / "nope" / "ledger.db"
    code, out, err = spend(capsys, "--db", f"sqlite:///{path}")
    assert code == 1 and str(path) in err and out == ""
    assert not path.exists() and not path.parent.exists()


def test_bad_db_url_is_an_error_without_secrets(capsys):
    code, _, err = spend(capsys, "--db", "mysql://root:hunter2@db/ledger")
    assert code == 1 and "unsupported scheme 'mysql'" in err and "hunter2" not in err


def test_bad_arguments_exit_2(ledger, capsys):
    for argv in (["--by", "model,flavour"], ["--since", "last tuesday"]):
        with pytest.raises(SystemExit) as info:
            main(["spend", "--db", ledger, *argv])
        assert info.value.code == 2
    assert "choose from day, model, deployment, key, team" in capsys.readouterr().err


def test_parsers():
    now = 1_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("24h", now) == now - 86400
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp()
    assert parse_since("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp()
    assert abs(parse_since("1h") - (time.time() - 3600)) < 5
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("7 days")
    assert parse_by("day,model,key,model") == ["day", "model_name", "key_id"]
    assert parse_by("model_name, team") == ["model_name", "team"]
    assert exact(Decimal("0.300000000000")) == "0.3" and exact(Decimal("7.5E-8")) == "0.000000075"
    assert exact(Decimal("12.000")) == "12" and exact(Decimal("0")) == "0"
