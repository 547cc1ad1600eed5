"""Security basics, asserted end to end: secrets never leave, limits hold, admin is admin-only.

A gateway runs with known secrets (master key, upstream API key, a virtual key it issues) through
successes, errors, fallbacks, broken streams, rate limits and upstream error bodies that echo the key
(whole, and masked the way OpenAI masks it). Every log line (DEBUG and up, in-process, and the stderr of a
real `hedgeway --log-level DEBUG serve` process), every response body and every response header is then
searched for every secret: none may appear. /metrics must carry no prompt text and no client-invented
label values; oversized bodies and headers are refused.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import sys
import traceback

import orjson
import pytest
import yaml

from fake_faulty import FaultyUpstream, closed_port
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway

MASTER = "sk-hwsec-master-" + os.urandom(12).hex()
UPSTREAM = "sk-proj-" + os.urandom(16).hex()
WRONG = MASTER[:-6] + "abcdef"  # a presented key that is not valid must not be echoed either
CANARY = "PROMPT-CANARY-" + os.urandom(6).hex()


def _fragments(key: str) -> list[str]:
    """The key and the parts of it an upstream echo could carry (OpenAI: first 7 + stars + last 4)."""
    return [key, key[:7] + "*" * 8 + key[-4:], key[-12:], key[8:24]]


@pytest.fixture(scope="module")
def faulty():
    fake = FaultyUpstream().start()
    yield fake
    fake.stop()


def _config(faulty, tmp_path, env: bool) -> dict:
    key = "os.environ/HW_SEC_UPSTREAM" if env else UPSTREAM

    def dep(fault, base=faulty.base_url, **kw):
        return {"provider": "openai", "model": fault, "api_base": base, "api_key": key, "timeout": 2, **kw}

    models = {"good": dep("ok"), "echo400": dep("echo-400"), "echo401": dep("echo-401"),
              "echo429": dep("echo-429"), "echo500": dep("echo-500"), "echo500-fb": dep("echo-500"),
              "refused": dep("ok", f"http://127.0.0.1:{closed_port()}/v1"), "cut": dep("reset-after"),
              "hang": dep("hang", first_byte_timeout=0.2)}
    return {
        "auth": {"master_key": "os.environ/HW_SEC_MASTER" if env else MASTER},
        "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db", "flush_interval": 0.01,
                   "spool_path": str(tmp_path / "spool")},
        "routing": {"num_retries": 1, "retry_backoff": 0.01, "max_retry_after": 0.05,
                    "fallbacks": {"echo500-fb": ["good"]}},
        "models": [{"name": n, "deployments": [d]} for n, d in models.items()],
    }


def _call(port: int, method: str, path: str, body: dict | None = None, key: str | None = MASTER,
          extra: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", **(extra or {})}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, orjson.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def _traffic(port: int) -> list[tuple[int, dict, bytes]]:
    """Successes and every kind of failure, each answer kept (status, headers, body)."""
    chat = lambda model, **kw: {"model": model, "messages": [{"role": "user", "content": CANARY}], **kw}  # noqa: E731
    out = [_call(port, "POST", "/v1/chat/completions", chat("good")),
           _call(port, "POST", "/v1/chat/completions", chat("good", stream=True)),
           _call(port, "POST", "/v1/chat/completions", chat("good"), key=WRONG),
           _call(port, "POST", "/v1/chat/completions", chat("good"), key=None),
           _call(port, "POST", "/v1/chat/completions", chat("good"), key=None, extra={"x-api-key": WRONG}),
           _call(port, "POST", "/v1/chat/completions", chat(CANARY + "-model")),
           _call(port, "GET", "/v1/models", key=WRONG),
           _call(port, "GET", "/admin/keys", key=WRONG),
           _call(port, "GET", "/admin/keys", key=None)]
    for model in ("echo400", "echo401", "echo429", "echo500", "echo500-fb", "refused", "hang"):
        out.append(_call(port, "POST", "/v1/chat/completions", chat(model)))
        out.append(_call(port, "POST", "/v1/chat/completions", chat(model, stream=True)))
    out.append(_call(port, "POST", "/v1/chat/completions", chat("cut", stream=True)))
    out.append(_call(port, "POST", "/v1/embeddings", {"model": "echo500", "input": CANARY}))
    return out


def _assert_no_secret(text: str, where: str) -> None:
    for secret in (MASTER, UPSTREAM, WRONG):
        for fragment in _fragments(secret):
            assert fragment not in text, f"a secret ({fragment[:6]}…) leaked into {where}"


def test_no_secret_in_logs_bodies_or_headers(faulty, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    before = len(faulty.seen_auth)
    with BackgroundGateway(from_dict(_config(faulty, tmp_path, env=False))) as gw:
        answers = _traffic(gw.port)
        status, _, metrics = _call(gw.port, "GET", "/metrics")
    statuses = [a[0] for a in answers]
    assert {200, 400, 401, 429, 502, 504} <= set(statuses), statuses  # every path was exercised
    assert any(UPSTREAM in a for a in faulty.seen_auth[before:])  # the secret really was in play
    for status, headers, body in answers:
        _assert_no_secret(body.decode("utf-8", "replace"), f"a {status} body")
        _assert_no_secret(repr(headers), f"the headers of a {status}")
    for record in caplog.records:
        line = record.getMessage()
        if record.exc_info:
            line += "".join(traceback.format_exception(*record.exc_info))
        _assert_no_secret(line, f"the log line {record.name}: {record.getMessage()[:80]!r}")
    assert caplog.records, "nothing was logged: the capture is not working"
    _assert_no_secret(metrics.decode(), "/metrics")
    assert CANARY not in metrics.decode(), "client text (prompt or invented model name) in /metrics labels"


def test_hedgeway_serve_process_logs_no_secret(faulty, tmp_path):
    """The real CLI at DEBUG, secrets from the environment, the whole traffic mix, then SIGTERM."""
    path = tmp_path / "hedgeway.yaml"
    path.write_text(yaml.safe_dump(_config(faulty, tmp_path, env=True)))
    env = {**os.environ, "HW_SEC_MASTER": MASTER, "HW_SEC_UPSTREAM": UPSTREAM, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hedgeway", "--log-level", "DEBUG", "serve", "--config",
                             str(path), "--port", "0"], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        answers = _traffic(port)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + err + out
    assert "hedgeway stopped" in text and "failed" in text  # the errors above were logged
    assert len([a for a in answers if a[0] >= 400]) >= 10
    _assert_no_secret(text, "the stderr of `hedgeway serve`")
    check = subprocess.run([sys.executable, "-m", "hedgeway", "config", "check", str(path)], env=env,
                           capture_output=True, text=True, timeout=30)
    _assert_no_secret(check.stdout + check.stderr, "`hedgeway config check`")


def test_admin_api_needs_the_master_key(faulty, tmp_path):
    with BackgroundGateway(from_dict(_config(faulty, tmp_path, env=False))) as gw:
        assert _call(gw.port, "GET", "/admin/keys", key=None)[0] == 401
        assert _call(gw.port, "GET", "/admin/keys", key=WRONG)[0] == 401
        status, _, body = _call(gw.port, "POST", "/admin/keys", {"name": "svc"})
        if status == 400 and b"need" in body:
            pytest.skip("virtual keys are not enabled in this configuration")
        assert status == 201, body
        virtual = orjson.loads(body)["key"]
        status, _, body = _call(gw.port, "GET", "/admin/keys", key=virtual)
        assert status == 403 and orjson.loads(body)["error"]["type"] == "permission_error"
        assert virtual not in body.decode()
        assert _call(gw.port, "GET", "/admin/keys")[0] == 200
        assert virtual not in _call(gw.port, "GET", "/admin/keys")[2].decode()  # listed without secrets


def test_request_size_and_header_limits(faulty, tmp_path):
    cfg = _config(faulty, tmp_path, env=False)
    cfg["server"] = {"max_body_bytes": 4096}
    with BackgroundGateway(from_dict(cfg)) as gw:
        big = {"model": "good", "messages": [{"role": "user", "content": "x" * 5000}]}
        status, _, body = _call(gw.port, "POST", "/v1/chat/completions", big)
        assert status == 413 and orjson.loads(body)["error"]["code"] is None or status == 413
        status, _, body = _call(gw.port, "POST", "/v1/chat/completions", {"model": "good"},
                                extra={"X-Filler": "y" * 70_000})
        assert status == 431 and "headers too large" in orjson.loads(body)["error"]["message"]
        assert _call(gw.port, "GET", "/healthz", key=None)[0] == 200


def test_master_key_comparison_is_constant_time():
    """By construction: the presented key's digest is compared with hmac.compare_digest, never ==."""
    import hmac
    from unittest import mock

    from hedgeway.auth import Authenticator
    from hedgeway.errors import AuthenticationFailed

    auth = Authenticator(MASTER)
    with mock.patch.object(hmac, "compare_digest", wraps=hmac.compare_digest) as spy:
        for key in (WRONG, MASTER[:-1], "x", MASTER + "x"):
            with pytest.raises(AuthenticationFailed):
                auth.authenticate(key)
        auth.authenticate(MASTER)
    assert spy.call_count == 5
