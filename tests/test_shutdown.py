"""SIGTERM under load: a real `hedgeway serve` process stops accepting, lets in-flight requests and streams
finish, flushes its ledger, and exits 0 — and the counts add up.

Clients keep sending (a third of them streams of ~0.5 s from the simulated provider) when the signal
arrives. Afterwards: every request a client got an answer for was answered completely (a stream ends
with `data: [DONE]`), no answer was cut, new connections are refused, the exit came within the drain
deadline, and the ledger holds exactly one row per answered request (no row lost, none doubled).
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import threading
import time

import orjson
import yaml

from conftest import MASTER
from hedgeway.ledger import open_store


def _config(tmp_path) -> str:
    cfg = {"auth": {"master_key": MASTER},
           "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db", "spool_path": str(tmp_path / "spool")},
           "models": [{"name": "sim", "deployments": [{
               "provider": "simulated", "model": "sim-1", "price": {"input": "1", "output": "2"},
               "settings": {"ttft_ms": 30, "tokens_per_second": 60, "max_output_tokens": 40}}]}]}
    path = tmp_path / "hedgeway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


class Client(threading.Thread):
    def __init__(self, port: int, n: int):
        super().__init__(daemon=True)
        self.port, self.stream = port, n % 3 == 0
        self.answered: list[str] = []  # request ids of complete answers
        self.cut: list[str] = []  # answers that started but did not complete
        self.refused = False

    def run(self) -> None:
        body = orjson.dumps({"model": "sim", "stream": self.stream, "max_tokens": 30,
                             "messages": [{"role": "user", "content": f"question {self.name}"}]})
        headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
        conn = None
        while True:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                    conn.connect()
            except ConnectionRefusedError:
                self.refused = True
                return
            try:
                conn.request("POST", "/v1/chat/completions", body, headers)
                resp = conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                conn.close()
                conn = None  # closed between requests (drain): reconnect, which is then refused
                continue
            rid = resp.getheader("x-hedgeway-request-id")
            try:
                data = resp.read()
                ok = resp.status == 200 and (not self.stream or data.rstrip().endswith(b"data: [DONE]"))
            except (http.client.IncompleteRead, ConnectionError):
                ok = False
            (self.answered if ok else self.cut).append(rid)
            if resp.getheader("connection") == "close":
                conn.close()
                conn = None


def test_sigterm_mid_load_drains_streams_and_flushes_the_ledger(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "hedgeway", "serve", "--config", _config(tmp_path),
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        clients = [Client(port, i) for i in range(9)]
        for c in clients:
            c.start()
        time.sleep(1.0)
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:  # the listening socket is closed at once
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            refused_new = False
        except ConnectionRefusedError:
            refused_new = True
        for c in clients:
            c.join(15)
        code = proc.wait(15)
        exit_s = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
    answered = [rid for c in clients for rid in c.answered]
    cut = [rid for c in clients for rid in c.cut]
    store = open_store(f"sqlite:///{tmp_path}/ledger.db")
    rows = store.records()
    store.close()
    ids = [r.request_id for r in rows]
    print(f"\nSIGTERM under load: answered={len(answered)} cut={len(cut)} ledger rows={len(rows)} "
          f"streams={sum(r.stream for r in rows)} exit after {exit_s:.2f}s")
    assert code == 0 and refused_new and all(c.refused or not c.is_alive() for c in clients)
    assert cut == [], "answers cut by the shutdown"
    assert exit_s < 3.0  # the longest stream (~0.6 s) plus slack, far inside the 10 s drain deadline
    assert len(answered) > 20 and sum(c.stream for c in clients) and any(r.stream for r in rows)
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(answered)  # sent == stored, no duplicates
    assert {r.status for r in rows} == {200}


def test_a_stream_the_client_left_after_done_is_recorded_before_the_drain_ends(upstream, tmp_path):
    """The client reads `[DONE]` and hangs up while the upstream keeps the response open: the drain must
    wait for the relay's cleanup, or the gateway closes its ledger before the stream's record is queued."""
    import openai

    from conftest import gateway_config
    from hedgeway.config import from_dict
    from hedgeway.http.background import BackgroundGateway

    url = f"sqlite:///{tmp_path}/ledger.db"
    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, url))) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0, timeout=10)
        stream = client.chat.completions.create(model="linger", stream=True,
                                                messages=[{"role": "user", "content": "hi there"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        client.close()  # gone; the upstream still has 0.4 s to go when the gateway drains
    assert text.startswith("echo: hi there")
    store = open_store(url)
    rows = store.records()
    store.close()
    assert [(r.model_name, r.status, r.stream) for r in rows] == [("linger", 200, True)]
