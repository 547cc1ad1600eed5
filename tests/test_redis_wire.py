"""redis_wire (the request path's Redis client) against redis-py's pure-Python RESP2 connection on the real
Redis: generated command sequences must get the same replies, concurrent commands their own replies, and
faults (a silent server, a dropped connection, a cancelled caller, a flushed script cache) the contract's
errors — never another command's reply."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgeway.redis_wire import RedisClient, ReplyError, pack

REDIS_URL = os.environ.get("HEDGEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
redis = pytest.importorskip("redis")


def _reference():
    """redis-py's connection with its pure-Python RESP2 parser: replies as the wire has them, no callbacks."""
    from redis.connection import Connection
    from redis._parsers import _RESP2Parser

    try:
        conn = Connection(host="127.0.0.1", port=6379, parser_class=_RESP2Parser, socket_timeout=5, protocol=2)
        conn.connect()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379")
    return conn


def _ref_call(conn, args):
    conn.send_command(*args)
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return ("error", str(exc))


def _err(text: str) -> tuple[str, str]:
    return ("error", text.removeprefix("ERR "))  # redis-py turns the ERR code into its exception class


def _norm(reply):
    """Errors compared by message; nested ones come as exception objects from both parsers."""
    if isinstance(reply, (ReplyError, redis.ResponseError)):
        return _err(str(reply))
    if isinstance(reply, tuple) and reply[:1] == ("error",):
        return _err(reply[1])
    if isinstance(reply, list):
        return [_norm(r) for r in reply]
    return reply


@pytest.fixture
def prefix():
    p = f"hwtest:wire:{uuid.uuid4().hex[:8]}:"
    yield p
    r = redis.Redis.from_url(REDIS_URL)
    for k in r.scan_iter(f"{p}*", count=1000):
        r.delete(k)
    r.close()


values = st.one_of(st.binary(max_size=64), st.text(max_size=32), st.integers(-2**63, 2**63 - 1),
                   st.just(b"\r\n$-1\r\n*3\r\n"), st.binary(min_size=70_000, max_size=70_001))
small = st.one_of(st.binary(max_size=16), st.integers(-1000, 1000))
key = st.sampled_from(["a", "b", "c"])
LUA = ("return {1, 'x', {ARGV[1], {}}, redis.pcall('INCR', KEYS[1]), false, "
       "redis.error_reply('ERR nested'), -7}")
command = st.one_of(
    st.tuples(st.just("SET"), key, values), st.tuples(st.just("GET"), key), st.tuples(st.just("DEL"), key),
    st.tuples(st.just("INCRBY"), key, st.integers(-10**6, 10**6)), st.tuples(st.just("HSET"), key, small, values),
    st.tuples(st.just("HGETALL"), key), st.tuples(st.just("RPUSH"), key, values),
    st.tuples(st.just("LRANGE"), key, st.just(0), st.just(-1)),
    st.tuples(st.just("ZADD"), key, st.floats(-1e6, 1e6, allow_nan=False), small),
    st.tuples(st.just("ZRANGE"), key, st.just(0), st.just(-1), st.just("WITHSCORES")),
    st.tuples(st.just("EVAL"), st.just(LUA), st.just(1), key, small),
    st.tuples(st.just("EVAL"), st.just("return redis.error_reply('ERR top')"), st.just(0)),
    st.tuples(st.just("NOSUCHCOMMAND"), small), st.tuples(st.just("ECHO"), values))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(command, min_size=1, max_size=12))
def test_generated_command_sequences_get_the_reference_clients_replies(prefix, cmds):
    """The same commands (on separate keys) through redis-py's RESP2 connection and through redis_wire —
    one at a time, then all in one `execute_many` write — get equal replies."""
    ref = _reference()
    run = uuid.uuid4().hex[:6]

    def keyed(cmd, tag):
        if cmd[0] in ("EVAL",):
            return (cmd[0], cmd[1], cmd[2], *(f"{prefix}{tag}{run}:{k}" for k in cmd[3:3 + cmd[2]]), *cmd[3 + cmd[2]:])
        if cmd[0] in ("ECHO", "NOSUCHCOMMAND"):
            return cmd
        return (cmd[0], f"{prefix}{tag}{run}:{cmd[1]}", *cmd[2:])

    expected = [_norm(_ref_call(ref, keyed(c, "r"))) for c in cmds]
    ref.disconnect()

    async def ours():
        client = RedisClient(REDIS_URL, timeout=5)
        one = []
        for c in cmds:
            try:
                one.append(_norm(await client.execute(*keyed(c, "o"))))
            except ReplyError as exc:
                one.append(_err(str(exc)))
        many = [_norm(r) for r in await client.execute_many([keyed(c, "m") for c in cmds])]
        await client.close()
        return one, many

    one, many = asyncio.run(ours())
    assert one == expected
    assert many == expected


def test_concurrent_commands_each_get_their_own_reply(prefix):
    """Hundreds of commands in flight on the one connection, with payloads that split across reads."""
    async def main():
        client = RedisClient(REDIS_URL, timeout=5)
        payloads = [os.urandom(n) for n in [0, 1, 100, 70_000, 1_000_000] * 60]
        replies = await asyncio.gather(*(client.execute("ECHO", p) for p in payloads),
                                       *(client.execute("INCR", f"{prefix}n") for _ in range(200)))
        assert replies[:len(payloads)] == payloads
        assert sorted(replies[len(payloads):]) == list(range(1, 201))
        await client.close()
    asyncio.run(main())


class _Proxy:
    """A loopback TCP proxy to the real Redis that can go silent (stop forwarding) or drop its connections."""

    def __init__(self):
        self.silent, self.conns, self.trickle = False, [], 0.0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", 6379)
        self.conns += [writer, up_w]

        async def pipe(src, dst, upward):
            while data := await src.read(65536):
                if self.trickle and not upward:  # replies in 8 KB pieces, `trickle` seconds apart
                    for i in range(0, len(data), 8192):
                        dst.write(data[i:i + 8192])
                        await asyncio.sleep(self.trickle)
                elif not (self.silent and upward):
                    dst.write(data)
            dst.close()
        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False), return_exceptions=True)

    def drop(self):
        for w in self.conns:
            w.transport.abort()
        self.conns = []


def test_a_silent_server_fails_commands_after_the_timeout_and_a_dropped_one_reconnects(prefix):
    """…while a large reply that keeps arriving, slower than the timeout in all, is not a timeout."""
    async def main():
        proxy = _Proxy()
        port = await proxy.start()
        client = RedisClient(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        assert await client.execute("SET", f"{prefix}k", "v") == b"OK"
        proxy.silent = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(client.execute("GET", f"{prefix}k") for _ in range(5)),
                                       return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        assert loop.time() - started < 1.0  # bounded by the timeout, not hung
        proxy.silent = False
        assert await client.execute("GET", f"{prefix}k") == b"v"  # a fresh connection, replies in step
        proxy.drop()
        await asyncio.sleep(0.05)
        assert await client.execute("GET", f"{prefix}k") == b"v"
        big = os.urandom(400_000)  # ~50 pieces at 20 ms: a second in all, but bytes keep coming
        await client.execute("SET", f"{prefix}big", big)
        proxy.trickle = 0.02
        assert await client.execute("GET", f"{prefix}big") == big
        await client.close()
        proxy.server.close()
    asyncio.run(main())


def test_a_cancelled_caller_does_not_shift_replies(prefix):
    async def main():
        client = RedisClient(REDIS_URL, timeout=5)
        slow = asyncio.ensure_future(client.execute("EVAL", "local x = 0 for i = 1, 3000000 do x = x + 1 end "
                                                    "return x", 0))
        await asyncio.sleep(0)
        fast = asyncio.ensure_future(client.execute("ECHO", b"mine"))
        await asyncio.sleep(0.001)
        slow.cancel()
        assert await fast == b"mine"
        assert await client.execute("ECHO", b"next") == b"next"
        await client.close()
    asyncio.run(main())


def test_scripts_load_on_noscript_and_urls_select_the_database_and_user(prefix):
    admin = redis.Redis.from_url(REDIS_URL)
    user, password = f"hwtest-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    try:
        async def main():
            client = RedisClient(f"redis://{user}:{password}@127.0.0.1:6379/3", timeout=5)
            script = client.script(f"return '{uuid.uuid4().hex}' .. ARGV[1]")  # new to this server
            assert admin.script_exists(script.sha) == [False]
            assert (await script("!")).endswith(b"!")
            assert admin.script_exists(script.sha) == [True]  # loaded; the next call runs by SHA
            await client.execute("SET", f"{prefix}db", "three")
            await client.close()
            bad = RedisClient(f"redis://{user}:wrong@127.0.0.1:6379/0", timeout=5)
            with pytest.raises(ConnectionError, match="AUTH"):
                await bad.execute("PING")
        asyncio.run(main())
        assert redis.Redis.from_url("redis://127.0.0.1:6379/3").get(f"{prefix}db") == b"three"
        assert admin.get(f"{prefix}db") is None
    finally:
        admin.acl_deluser(user)
        redis.Redis.from_url("redis://127.0.0.1:6379/3").delete(f"{prefix}db")


def test_pack_encodes_like_the_protocol_says():
    assert pack(("SET", "k", b"a\r\nb", 12, 0.5)) == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n$2\r\n12\r\n$3\r\n0.5\r\n"
    assert pack(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


def test_an_unreachable_server_is_a_connection_error_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        client = RedisClient(f"redis://127.0.0.1:{port}/0", timeout=0.2, connect_timeout=0.5)
        with pytest.raises(OSError):
            await client.execute("PING")
    asyncio.run(main())
