"""Bad input, generated: the HTTP API answers every request with a clear 4xx (never a 5xx, never a crash,
never an unhandled exception in the logs), the config loader raises only ConfigError, and the SSE usage
tap never raises and never changes the bytes it must pass through.

The gateway under fuzz uses the simulated provider (in-process, instant), so thousands of requests take
seconds. Example counts are fixed and the database is off (derandomize), so a run is repeatable.
"""

from __future__ import annotations

import http.client
import logging
import socket

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MASTER
from hedgeway.config import from_dict
from hedgeway.errors import ConfigError
from hedgeway.http.background import BackgroundGateway
from hedgeway.sse import UsageTap

MAX_BODY = 64 * 1024
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

CONFIG = {
    "server": {"max_body_bytes": MAX_BODY},
    "auth": {"master_key": MASTER},
    "ledger": {"url": "sqlite://:memory:", "spool_path": None},
    "models": [{"name": "sim", "deployments": [{
        "provider": "simulated", "model": "sim-1", "price": {"input": "1", "output": "2"},
        "settings": {"ttft_ms": 0, "tokens_per_second": 1e6, "max_output_tokens": 8, "embedding_dim": 4}}]}],
}


class Unhandled(logging.Handler):
    """Collects log records that carry an exception (an unhandled error somewhere in the gateway)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        if record.exc_info or record.levelno >= logging.CRITICAL or "unhandled" in record.getMessage().lower():
            self.records.append(record)


@pytest.fixture(scope="module")
def gw():
    watch = Unhandled()
    root = logging.getLogger()
    root.addHandler(watch)
    with BackgroundGateway(from_dict(CONFIG)) as gateway:
        gateway.unhandled = watch.records
        yield gateway
    root.removeHandler(watch)
    assert watch.records == [], [r.getMessage() for r in watch.records]


def send(gw, raw: bytes) -> tuple[int, dict, bytes]:
    """One raw HTTP exchange on a fresh connection: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(raw)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def post(gw, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    head = {"Host": "x", "Authorization": f"Bearer {MASTER}", "Content-Type": "application/json",
            "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode("latin-1")
    return send(gw, f"POST {path} HTTP/1.1\r\n".encode() + lines + b"\r\n" + body)


def assert_clean(status: int, headers: dict, body: bytes) -> None:
    """Not a server error; an error is OpenAI's envelope, and says something."""
    assert status < 500, body[:300]
    if status >= 400:
        err = orjson.loads(body)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
KNOWN = ["model", "messages", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens",
         "temperature", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs", "cache", "stop",
         "tools", "input", "dimensions", "user", "seed"]


@st.composite
def chat_bodies(draw):
    """Mostly-valid chat requests with some fields replaced by anything, plus unknown fields."""
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    for key in draw(st.lists(st.sampled_from(KNOWN), max_size=4, unique=True)):
        body[key] = draw(json_values | st.integers(-(2**63), 2**63 - 1))
    body.update(draw(st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=2)))
    return body


@FUZZ
@given(body=chat_bodies(), path=st.sampled_from(["/v1/chat/completions", "/v1/embeddings"]))
def test_wrong_types_unknown_fields_and_huge_numbers_get_a_clear_answer(gw, body, path):
    if path == "/v1/embeddings":
        body.setdefault("input", "hello")
    status, headers, data = post(gw, path, orjson.dumps(body))
    assert_clean(status, headers, data)


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_any_bytes_as_a_body(gw, raw):
    status, headers, data = post(gw, "/v1/chat/completions", raw)
    assert_clean(status, headers, data)
    assert status in (400, 404)  # never "accepted" garbage


def test_invalid_utf8_and_deep_nesting(gw):
    cases = [b'{"model": "sim", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
             b'{"model": "\xc3\x28", "messages": []}',
             b"[" * 100_00 + b"]" * 100_00,
             b'{"a":' * 5000 + b"1" + b"}" * 5000,
             orjson.dumps({"model": "sim", "messages": [{"role": "user", "content": "x"}]})[:-1] + b',"deep":'
             + b"[" * 2000 + b"]" * 2000 + b"}"]  # past orjson's 1024-level limit
    for raw in cases:
        status, headers, data = post(gw, "/v1/chat/completions", raw)
        assert_clean(status, headers, data)
        assert status == 400, data


@pytest.mark.parametrize("field, value", [("n", 10**9), ("n", 0), ("n", "2"), ("max_tokens", 2**62),
                                          ("max_tokens", -1), ("max_tokens", 1.5), ("temperature", 1e300),
                                          ("temperature", "hot"), ("messages", ["hi"]), ("stream", "yes"),
                                          ("messages", [{"content": "no role"}])])
def test_huge_or_mistyped_known_fields_are_400_naming_the_field(gw, field, value):
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], field: value}
    status, _, data = post(gw, "/v1/chat/completions", orjson.dumps(body))
    assert status == 400 and orjson.loads(data)["error"]["param"] == field


def test_oversized_body_and_headers(gw):
    status, headers, data = post(gw, "/v1/chat/completions", b"x" * (MAX_BODY + 1))
    assert status == 413 and orjson.loads(data)["error"]["type"] == "invalid_request_error"
    status, _, data = post(gw, "/v1/chat/completions", b"{}", {"X-Big": "a" * 100_000})
    assert status in (431, 400) and orjson.loads(data)["error"]
    many = {f"X-H{i}": "v" * 100 for i in range(1000)}
    status, _, _ = post(gw, "/v1/chat/completions", b"{}", many)
    assert status in (431, 400)
    # a header that never ends: refused once it passes the limit, not buffered forever
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        try:
            for _ in range(200):
                s.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    status, _, _ = send(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200  # and the server is fine


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(line=st.binary(min_size=1, max_size=200))
def test_garbage_request_lines(gw, line):
    try:
        status, headers, data = send(gw, line + b"\r\n\r\n")
    except (http.client.HTTPException, ConnectionError, socket.timeout):
        return  # the server may close a connection that never formed a request; it must not 5xx
    assert status < 500


# --- schemathesis, from the served OpenAPI document ---------------------------------------------------------

def test_openapi_document_is_served_and_valid(gw):
    status, headers, data = send(gw, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    doc = orjson.loads(data)
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/openapi.json"} <= set(doc["paths"])
    from hedgeway.http.routes import Routes

    served = {p for p in Routes.__init__.__code__.co_consts if isinstance(p, str) and p.startswith("/")}
    documented = set(doc["paths"]) | {"/chat/completions", "/embeddings", "/models"}  # aliases
    assert served - documented == set(), "routes missing from the OpenAPI document"
    try:
        from jsonschema_rs import validator_for  # ships with schemathesis
    except ImportError:
        return
    validator_for(doc["components"]["schemas"]["ChatCompletionRequest"])  # a valid JSON Schema


def test_schemathesis_finds_no_server_error(gw):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import given as hgiven

    _, _, data = send(gw, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    doc = orjson.loads(data)
    # Point generated requests at this gateway's model, so they get past routing into the pipeline.
    for schema in ("ChatCompletionRequest", "EmbeddingsRequest", "ResponsesRequest"):
        doc["components"]["schemas"][schema]["properties"]["model"] = {"enum": ["sim", "nope"]}
    schema = schemathesis.openapi.from_dict(doc)
    base = f"http://127.0.0.1:{gw.port}"
    seen: dict[str, int] = {}
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith("/v1/messages"):
            continue  # Anthropic formats: fuzzed by the Messages API's own tests

        # valid by the schema, and (negative mode) violating it: wrong types, missing fields, out of range
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @hgiven(case=st.one_of(*(op.as_strategy(mode) for mode in modes)))
        def run(case):
            resp = case.call(base_url=base, headers={"Authorization": f"Bearer {MASTER}"}, timeout=10)
            key = f"{op.label} {'valid' if resp.status_code < 400 else resp.status_code}"
            seen[key] = seen.get(key, 0) + 1
            assert resp.status_code < 500, (case.body, resp.text[:300])
            if resp.status_code >= 400 and resp.headers.get("content-type") == "application/json":
                assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
        run()
    print(f"\nschemathesis requests by operation: {seen}")
    assert seen.get("POST /v1/chat/completions valid", 0) >= 5 and seen.get("POST /v1/chat/completions 400", 0) >= 5


# --- the config loader -------------------------------------------------------------------------------------

VALID = {"auth": {"master_key": "k"}, "models": [{"name": "m", "deployments": [
    {"provider": "openai", "model": "gpt-4o-mini", "api_key": "x", "timeout": 5}]}],
    "routing": {"fallbacks": {}}, "ledger": {"url": "sqlite:///x.db"}}
LITELLM = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "x"}}],
           "general_settings": {"master_key": "k"}, "litellm_settings": {"num_retries": 1}}
CONFIG_KEYS = st.sampled_from(["server", "auth", "ledger", "routing", "models", "limits", "cache", "model_list",
                               "litellm_settings", "router_settings", "general_settings", "name", "deployments",
                               "provider", "model", "price", "settings", "fallbacks", "litellm_params",
                               "model_name", "api_base", "timeout", "master_key", "url"])
config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["os.environ/HW_FUZZ_UNSET", "openai", "simulated", "sqlite:///x", "postgresql://x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CONFIG_KEYS | st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20)


def _mutate(doc, path, value):
    """doc with the node at `path` (a list of indices into dict keys / list items) replaced by value."""
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    out = dict(doc) if isinstance(doc, dict) else list(doc)
    out[key] = _mutate(doc[key], path[1:], value)
    return out


def _only_config_errors(raw) -> None:
    try:
        from_dict(raw)
    except ConfigError:
        pass


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(raw=config_values)
def test_config_loader_raises_only_config_error_on_anything(raw):
    _only_config_errors(raw)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(base=st.sampled_from([VALID, LITELLM]), path=st.lists(st.integers(0, 7), max_size=5), value=config_values)
def test_config_loader_raises_only_config_error_on_a_mutated_valid_config(base, path, value):
    _only_config_errors(_mutate(base, path, value))


# --- the SSE usage tap -------------------------------------------------------------------------------------

def _events(n_words: int, sep: bytes, with_usage: bool) -> tuple[list[bytes], bytes]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}}],
                                        "usage": None}) for i in range(n_words)]
    usage = b"data: " + orjson.dumps({**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n_words}})
    if with_usage:
        events.append(usage)
    events.append(b"data: [DONE]")
    return events, usage


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(n=st.integers(0, 12), sep=st.sampled_from([b"\n\n", b"\r\n\r\n"]), keep=st.booleans(),
       cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_usage_tap_any_chunking_passes_bytes_through_and_reads_usage(n, sep, keep, cuts):
    events, usage = _events(n, sep, True)
    stream = sep.join(events) + sep
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    tap = UsageTap(keep_usage=keep)
    out = b"".join(tap.feed(c) for c in chunks) + tap.flush()
    expected = stream if keep else sep.join(e for e in events if e != usage) + sep
    assert out == expected
    assert tap.usage is not None and tap.usage.completion_tokens == n and tap.done


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(chunks=st.lists(st.binary(max_size=300) | st.sampled_from(
    [b"data: {\"usage\":{", b"\n\n", b"\r\n\r\n", b'"usage": {"prompt_tokens": "x"}', b"data: [DONE]"]),
    max_size=20), keep=st.booleans())
def test_usage_tap_never_raises_on_garbage(chunks, keep):
    tap = UsageTap(keep_usage=keep)
    out = b"".join(tap.feed(c) for c in chunks) + tap.flush()
    assert len(out) <= sum(map(len, chunks))  # it only ever drops (the usage event), never invents
