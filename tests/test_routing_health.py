"""Health: EWMA figures, breaker opening on failures or slow calls, half-open probe, close."""

from __future__ import annotations

from hedgeway.routing.config import BreakerIn
from hedgeway.routing.health import CLOSED, HALF_OPEN, OPEN, Health


def test_breaker_opens_after_n_failures_then_probe_closes_it():
    h = Health(BreakerIn(failures=3, cooldown=10), 0.5, ["d"])
    for t in range(2):
        h.record("d", False, 0.1, False, now=t)
    assert h.deps["d"].state == CLOSED and h.usable("d", now=2)
    h.record("d", False, 0.1, False, now=3)
    assert h.deps["d"].state == OPEN and not h.usable("d", now=5)
    assert h.usable("d", now=13.5) and h.deps["d"].state == HALF_OPEN  # the one probe
    assert not h.usable("d", now=13.6)  # nobody else while the probe is out
    h.record("d", True, 0.2, False, now=14)
    assert h.deps["d"].state == CLOSED and h.usable("d", now=14)


def test_failed_probe_reopens_and_lost_probe_is_reissued():
    h = Health(BreakerIn(failures=1, cooldown=10), 0.5, ["d"])
    h.record("d", False, 0.1, False, now=0)
    assert h.usable("d", now=10)
    h.record("d", False, 0.1, False, now=11)
    assert h.deps["d"].state == OPEN and not h.usable("d", now=15)
    assert h.usable("d", now=21)  # probe handed out, never reported back...
    assert not h.usable("d", now=25) and h.usable("d", now=31.5)  # ...so another after a cooldown


def test_slow_call_rate_opens_the_breaker():
    h = Health(BreakerIn(failures=5, slow_call=1.0, slow_rate=0.5, window=4), 0.5, ["d"])
    for s in (0.1, 2.0, 0.1):
        h.record("d", True, s, False, now=0)
    assert h.deps["d"].state == CLOSED
    h.record("d", True, 3.0, False, now=0)
    assert h.deps["d"].state == OPEN


def test_ewma_latency_ttft_and_error_rate():
    h = Health(BreakerIn(), 0.5, ["d"])
    h.record("d", True, 1.0, False)
    h.record("d", True, 3.0, False)
    h.record("d", True, 0.2, True)
    h.record("d", False, 0.0, False)
    snap = h.snapshot()["d"]
    assert snap["latency_ms"] == 2000.0 and snap["ttft_ms"] == 200.0 and snap["error_rate"] == 0.5
    assert snap["calls"] == 4 and snap["failures"] == 1
