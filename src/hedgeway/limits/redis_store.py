"""Redis limits store: the memory store's operations as one Lua script each, shared by every replica.

Each script runs atomically and takes its clock from `redis.call('TIME')`, so replicas with skewed
clocks agree on windows, reservation expiries and period starts (computed in Lua, UTC). Keys live under
the configured prefix:

    {p}b:{scope}:{period}:{start}        hash spent, held (units of 1e-9 USD)
    {p}b:…:a / {p}b:…:r                   hash rid → reserved units / zset rid → expiry (ms)
    {p}b:…:alert:{threshold}              SET NX marker: an alert fires once per period, across replicas
    {p}w:{name}  / :w / :s                zset member → time (ms) / hash member → weight / live sum

Keys are built inside the scripts (period starts come from Redis's clock), so this needs a standalone
Redis (or a single-slot setup), not Redis Cluster. Errors surface as `StoreDown`; the admission decides
between fail-closed and fail-open.
"""

from __future__ import annotations

from hedgeway.limits.memory import Verdict

COMMON = r"""
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local floor = math.floor
local function civil(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function days(y, m)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + floor((153 * mp + 2) / 5)
  return era * 146097 + doe - 719468
end
local function bounds(period)
  if period == 'daily' then local s = sec - sec % 86400; return s, s + 86400 end
  if period == 'weekly' then local s = sec - (sec - 345600) % 604800; return s, s + 604800 end
  if period == 'monthly' then
    local y, m = civil(floor(sec / 86400))
    local ny, nm = y, m + 1
    if nm > 12 then ny, nm = y + 1, 1 end
    return days(y, m) * 86400, days(ny, nm) * 86400
  end
  return 0, -1
end
"""

RESERVE = COMMON + r"""
-- ARGV: prefix, rid, ttl_ms, window_ms, nb, nw, share, hold_ms, then nb × (scope, period, limit, amount, want),
--       then nw × (name, limit, weight, want)
-- A reservation holds `amount` (a window entry `weight`). A lease (want > amount) holds more: up to `want`,
-- but never more than `share` of the room left, and never less than the request's own amount; its window
-- entries are dated `hold_ms` ahead, to the end of the lease, since the replica admits on them until then.
local p, rid, ttl, span = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local nb, nw, share, hold = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9
local function grant(need, want, room)
  if want <= need then return need end
  return math.max(need, math.min(want, floor(room * share)))
end
local bk, amts, out, grants = {}, {}, {1}, {}
for b = 1, nb do
  local scope, period, limit, amt = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local want = tonumber(ARGV[i + 4])
  i = i + 5
  local s, e = bounds(period)
  local k = p .. 'b:' .. scope .. ':' .. period .. ':' .. s
  local dead = redis.call('ZRANGEBYSCORE', k .. ':r', '-inf', now, 'LIMIT', 0, 500)
  if #dead > 0 then
    local freed = 0
    for _, a in ipairs(redis.call('HMGET', k .. ':a', unpack(dead))) do freed = freed + (tonumber(a) or 0) end
    redis.call('HDEL', k .. ':a', unpack(dead))
    redis.call('ZREM', k .. ':r', unpack(dead))
    redis.call('HINCRBY', k, 'held', -freed)
  end
  local v = redis.call('HMGET', k, 'spent', 'held')
  local spent, held = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if spent + held + amt > limit then
    return {0, b, spent, held, e, (spent + amt <= limit) and 1 or 0}
  end
  bk[b], amts[b] = {k, e}, grant(amt, want, limit - spent - held)
  out[#out + 1] = k
  grants[#grants + 1] = amts[b]
end
local wk, ws = {}, {}
for w = 1, nw do
  local k, limit, weight, want = p .. 'w:' .. ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  i = i + 4
  local sum = tonumber(redis.call('GET', k .. ':s')) or 0
  while true do
    local old = redis.call('ZRANGEBYSCORE', k, '-inf', now - span, 'LIMIT', 0, 1000)
    if #old == 0 then break end
    for _, x in ipairs(redis.call('HMGET', k .. ':w', unpack(old))) do sum = sum - (tonumber(x) or 0) end
    redis.call('HDEL', k .. ':w', unpack(old))
    redis.call('ZREM', k, unpack(old))
    redis.call('SET', k .. ':s', sum, 'PX', span * 2)
  end
  if sum + weight > limit then
    local need, freed = sum + weight - limit, 0
    local live = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    for j = 1, #live, 2 do
      freed = freed + (tonumber(redis.call('HGET', k .. ':w', live[j])) or 0)
      if freed >= need then return {-1, w, tonumber(live[j + 1]) + span - now} end
    end
    return {-1, w, span}
  end
  wk[w], ws[w] = k, grant(weight, want, limit - sum)
  grants[#grants + 1] = ws[w]
end
for b = 1, nb do
  local k, e = bk[b][1], bk[b][2]
  redis.call('HINCRBY', k, 'held', amts[b])
  redis.call('HSET', k .. ':a', rid, amts[b])
  redis.call('ZADD', k .. ':r', now + ttl, rid)
  if e > 0 then
    for _, x in ipairs({k, k .. ':a', k .. ':r'}) do redis.call('EXPIREAT', x, e + 172800) end
  end
end
for w = 1, nw do
  local k = wk[w]
  redis.call('ZADD', k, now + hold, rid)
  redis.call('HSET', k .. ':w', rid, ws[w])
  redis.call('INCRBY', k .. ':s', ws[w])
  for _, x in ipairs({k .. ':s', k, k .. ':w'}) do redis.call('PEXPIRE', x, span * 2 + hold) end
end
for _, g in ipairs(grants) do out[#out + 1] = g end
return out
"""

SETTLE = r"""
-- Settles a batch of requests (and returned leases) in one call. ARGV: nt, nt × threshold, then per item:
--   rid, actual, nb, nw, nb × (key, limit), nw × (window key, member, weight, lease)
-- A returned lease's window entry is re-dated to now (no earlier than any admission made on it).
-- Returns one {spents, fired} per item, in order.
local now
local nt = tonumber(ARGV[1])
local th = {}
for j = 1, nt do th[j] = ARGV[1 + j] end
local i = 2 + nt
local results = {}
while i <= #ARGV do
local rid, actual, nb, nw = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
i = i + 4
local spents, fired = {}, {}
for b = 1, nb do
  local k, limit = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local a = redis.call('HGET', k .. ':a', rid)
  if a then
    redis.call('HDEL', k .. ':a', rid)
    redis.call('ZREM', k .. ':r', rid)
    redis.call('HINCRBY', k, 'held', -tonumber(a))
  end
  local spent = redis.call('HINCRBY', k, 'spent', actual)
  spents[b] = spent
  if actual > 0 then
    for j = 1, nt do
      if spent >= tonumber(th[j]) * limit then
        local ttl = redis.call('PTTL', k)
        local ok
        if ttl > 0 then ok = redis.call('SET', k .. ':alert:' .. th[j], 1, 'NX', 'PX', ttl)
        else ok = redis.call('SET', k .. ':alert:' .. th[j], 1, 'NX') end
        if ok then fired[#fired + 1] = b; fired[#fired + 1] = th[j] end
      end
    end
  end
end
for w = 1, nw do
  local k, m, weight = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local lease = ARGV[i + 3] == '1'
  i = i + 4
  local old = redis.call('HGET', k .. ':w', m)
  if old then
    redis.call('HSET', k .. ':w', m, weight)
    redis.call('INCRBY', k .. ':s', weight - tonumber(old))
    if lease then
      if not now then local t = redis.call('TIME'); now = t[1] * 1000 + math.floor(t[2] / 1000) end
      redis.call('ZADD', k, 'XX', 'LT', now, m)
    end
  end
end
results[#results + 1] = {spents, fired}
end
return results
"""


class StoreDown(Exception):
    """The shared store did not answer (connection refused, timeout, error reply)."""


class RedisStore:
    def __init__(self, url: str, prefix: str, ttl: float, window: float, timeout: float,
                 connect_timeout: float = 1.0):
        from hedgeway.redis_wire import RedisClient, ReplyError

        self.errors = (ReplyError, OSError)  # OSError: refused, reset, timed out (redis_wire's contract)
        # One multiplexed connection (redis_wire): every command is bounded by `timeout`, so an outage never
        # hangs a request, and a burst shares the connection instead of queueing for a pool.
        self.client = RedisClient(url, timeout, connect_timeout)
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)
        self.span_ms = int(window * 1000)
        self._reserve = self.client.script(RESERVE)
        self._settle = self.client.script(SETTLE)

    async def reserve(self, rid: str, budgets: list[tuple[str, str, int, int, int]],
                      windows: list[tuple[str, int, int, int]], share: float = 0.0, hold_ms: int = 0) -> Verdict:
        """Reserve `(scope, period, limit, amount, want)` in every budget and `(name, limit, weight, want)` in
        every window, all or nothing. `want` > amount asks for a lease: the verdict's `grants` say how much was
        held (budgets first, then windows), at least the amount, at most `share` of the room; window entries
        are dated `hold_ms` ahead (the lease's end)."""
        args = [self.prefix, rid, self.ttl_ms, self.span_ms, len(budgets), len(windows), repr(share), hold_ms]
        for b in budgets:
            args.extend(b)
        for w in windows:
            args.extend(w)
        try:
            r = await self._reserve(*args)
        except self.errors as exc:
            raise StoreDown(f"{type(exc).__name__}: {exc}") from None
        if r[0] == 1:
            nb = len(budgets)
            return Verdict(True, keys=[k.decode() if isinstance(k, bytes) else k for k in r[1:1 + nb]],
                           grants=r[1 + nb:])
        if r[0] == 0:
            end = int(r[4])
            return Verdict(False, budget=int(r[1]) - 1, spent=int(r[2]), held=int(r[3]),
                           end=None if end < 0 else end, soft=bool(r[5]))
        return Verdict(False, window=int(r[1]) - 1, retry_ms=int(r[2]))

    async def settle(self, items: list[tuple[str, list[tuple[str, int]], int, list[tuple[str, str, int]]]],
                     thresholds: list[float]) -> list[tuple[list[int], list[tuple[int, float]]]]:
        """Settle a batch of requests, `(rid, budgets [(key, limit)], actual, windows [(name, member,
        weight, lease)])` each, in one script call; per request: (spent per budget, [(budget index,
        threshold)] of the alerts that fired). `lease` true re-dates the window entry to now."""
        args: list = [len(thresholds), *(repr(t) for t in thresholds)]
        for rid, budgets, actual, windows in items:
            args += (rid, actual, len(budgets), len(windows))
            for b in budgets:
                args.extend(b)
            for name, member, weight, lease in windows:
                args += (f"{self.prefix}w:{name}", member, weight, 1 if lease else 0)
        try:
            results = await self._settle(*args)
        except self.errors as exc:
            raise StoreDown(f"{type(exc).__name__}: {exc}") from None
        return [([int(s) for s in spents], [(int(fired[j]) - 1, float(fired[j + 1])) for j in range(0, len(fired), 2)])
                for spents, fired in results]

    async def close(self) -> None:
        await self.client.close()
