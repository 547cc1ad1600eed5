"""The command line as a user runs it: real processes, real signals, the ledger read back."""

from __future__ import annotations

import json
import os
import signal
import socket
import re
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

import pytest

from conftest import MASTER
from hedgeway.ledger import open_store

HW = [sys.executable, "-m", "hedgeway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path, upstream_url: str, ledger: str, fmt: str = "hedgeway") -> str:
    if fmt == "litellm":
        text = f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/ok-mini, api_base: "{upstream_url}", api_key: os.environ/HW_UPSTREAM_KEY}}
litellm_settings: {{num_retries: 0, success_callback: []}}
general_settings: {{master_key: os.environ/HW_MASTER, database_url: "{ledger}"}}
"""
    else:
        text = f"""
auth: {{master_key: os.environ/HW_MASTER}}
ledger: {{url: "{ledger}"}}
models:
  - name: gpt-4o-mini
    deployments:
      - {{provider: openai, model: ok-mini, api_base: "{upstream_url}", api_key: os.environ/HW_UPSTREAM_KEY,
          price: {{input: "0.15", output: "0.60"}}}}
"""
    path = tmp_path / f"{fmt}.yaml"
    path.write_text(text)
    return str(path)


ENV = {**os.environ, "HW_MASTER": MASTER, "HW_UPSTREAM_KEY": "sk-up"}


def test_config_check_reports_ok_and_errors(tmp_path, upstream):
    good = write_config(tmp_path, upstream.base_url, "sqlite:///x.db", "litellm")
    out = subprocess.run(HW + ["config", "check", good], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0 and "litellm format" in out.stdout
    assert "warning: litellm_settings.success_callback: not supported yet" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("auth: {master_key: k}\nmodels: [{name: m, deployments: [{provider: openai, model: x, timeout: -1}]}]\n")
    out = subprocess.run(HW + ["config", "check", str(bad)], capture_output=True, text=True, env=ENV)
    assert out.returncode == 1 and "models[0].deployments[0].timeout" in out.stderr


@pytest.mark.parametrize("fmt", ["hedgeway", "litellm"])
def test_serve_answers_the_sdk_and_flushes_ledger_on_sigterm(tmp_path, upstream, fmt):
    import openai

    ledger = f"sqlite:///{tmp_path}/serve.db"
    port = free_port()
    proc = subprocess.Popen(HW + ["serve", "--config", write_config(tmp_path, upstream.base_url, ledger, fmt),
                                  "--port", str(port)], env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=0)
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
        assert text.strip() == "echo: hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert MASTER not in err and "sk-up" not in err
    store = open_store(ledger)
    assert len(store.records()) == 21  # everything queued at SIGTERM was flushed
    store.close()


def test_spend_reads_what_serve_wrote(tmp_path, upstream):
    ledger = f"sqlite:///{tmp_path}/spend.db"
    from hedgeway.config import from_dict
    from hedgeway.http.background import BackgroundGateway
    from conftest import gateway_config
    import openai

    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, ledger))) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    out = subprocess.run(HW + ["spend", "--db", ledger, "--by", "model", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    [row] = [r for r in rows if r.get("model_name") == "gpt-4o-mini"]
    assert row["requests"] == 3 and Decimal(row["cost"]) == Decimal("0.0000135")


def test_demo_runs_offline_and_summarises(tmp_path):
    out = subprocess.run(HW + ["demo", "--requests", "40", "--no-progress", "--db", f"sqlite:///{tmp_path}/demo.db"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "40 requests sent" in out.stdout and "40 ledger records" in out.stdout
    for tier in ("premium-api", "cheap-api", "self-hosted"):
        assert tier in out.stdout
    split = re.search(r"Routed by complexity: complex (\d+), medium (\d+), simple (\d+)\. .* \((\d+)% less\)",
                      out.stdout)
    assert split, out.stdout  # every tier got traffic, and routing cost less than all-premium
    cache = re.search(r"Cache: (\d+) of 40 requests answered from the exact cache .*: ([\d.]+) USD saved", out.stdout)
    assert cache, out.stdout  # every fifth request repeats an earlier one; the cache answers some of them
    hits = int(cache.group(1))
    assert 0 < hits <= 8 and float(cache.group(2)) > 0
    assert all(int(n) > 0 for n in split.groups()[:3]) and sum(int(n) for n in split.groups()[:3]) + hits == 40
    assert 0 < int(split.group(4)) < 100


def test_serve_with_two_workers_shares_the_port_and_flushes_both(tmp_path, upstream):
    import openai

    ledger = f"sqlite:///{tmp_path}/workers.db"
    port = free_port()
    proc = subprocess.Popen(HW + ["serve", "--config", write_config(tmp_path, upstream.base_url, ledger),
                                  "--port", str(port), "--workers", "2"], env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=5)
        deadline = time.time() + 30
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        for _ in range(30):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])  # new connection each time
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    store = open_store(ledger)
    rows = store.records()
    store.close()
    assert len(rows) == 30
    assert len({r.request_id.split("-")[1] for r in rows}) == 2  # both workers answered
