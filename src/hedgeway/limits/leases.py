"""Budget and rate leases: a replica takes a block of a budget or of a rate window from Redis and admits on
it locally, so most requests do not wait on Redis.

A lease is a Redis reservation like a request's (redis_store.RESERVE with `want` > amount), only larger:
the script grants at most `share` of the room left and never less than the request that asked. Leases are
counted where reservations are (a budget's `held`, a window's sum), so the leases of all replicas never
exceed the room: overspend stays impossible and a window never admits more than its limit.

- Budget lease: a request takes its reservation from `left`; its settlement gives back the difference and
  adds the actual cost to `used`. On return, Redis releases the lease and adds `used` to the spend, in the
  same batched SETTLE call as per-request settlements (alerts fire there, as for a request).
- Window lease (rpm: slots; tpm: tokens): its Redis entry is dated at the lease's end, so it counts for a
  whole window after the last admission it could have made; on return its weight becomes `used` and its
  date the return time (no earlier than any admission made on it).

A lease closes to new admissions after `seconds` (an idle replica never sits on room other replicas need),
as soon as a request does not fit in it (a new lease replaces it), and at shutdown. It is returned once
the requests admitted on it have settled. A budget lease spends in the period it was taken in, up to
`seconds` past that period's end. A crashed replica's leases stay held until the reservation TTL (budgets)
or until their window entries age out (windows), like its requests in flight.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(slots=True, eq=False)
class Lease:
    item: str  # what it leases: "b:<scope>:<period>" or "w:<window name>"
    rid: str  # its reservation id in Redis
    key: str  # budget: the Redis budget key (period fixed); window: the window name
    unit: str  # "usd" (budget units), "req" (rpm slots) or "tok" (tpm tokens)
    left: int
    deadline: float  # time.monotonic(): no admission on it from then on
    budget: Any = None  # the Budget (budget leases)
    used: int = 0
    inflight: int = 0
    open: bool = True


Taken = list[tuple[Lease, int]]  # (lease, amount taken from it) per budget and window of one request


class Leases:
    """This replica's open leases, one per budget and window at most; `give_back(lease)` returns a closed,
    drained lease to Redis (queued with the settlements)."""

    def __init__(self, requests: int, seconds: float, share: float, give_back: Callable[[Lease], None]):
        self.requests = requests  # a lease asks for this many requests' worth
        self.seconds = seconds
        self.share = share
        self.hold_ms = int(seconds * 1000) + 1  # window entries dated past the local deadline
        self.held: dict[str, Lease] = {}
        self.renewing: dict[tuple[str, ...], asyncio.Event] = {}  # item sets being leased now
        self.count = 0  # leases taken
        self._give_back = give_back

    def take(self, items: tuple[str, ...], amounts: list[int]) -> Taken | None:
        """Take `amounts` from the open leases of `items`, all or none. None: one is missing, expired or too
        small (and is closed, so that its rest goes back to Redis as soon as it drains)."""
        now = time.monotonic()
        taken = []
        for item, amount in zip(items, amounts):
            lease = self.held.get(item)
            if lease is None:
                return None
            if lease.left < amount or now >= lease.deadline:
                self.close(lease)
                return None
            taken.append((lease, amount))
        for lease, amount in taken:
            lease.left -= amount
            lease.inflight += 1
        return taken

    def install(self, items: tuple[str, ...], units: list[str], keys: list[str], budgets: list[Any],
                rid: str, grants: list[int], amounts: list[int], sent: float) -> Taken:
        """The leases Redis granted (reserved at or after `sent`, time.monotonic()), with the asking request's
        `amounts` already taken from them. They replace (and close) older leases of the same items."""
        deadline = sent + self.seconds
        taken = []
        for item, unit, key, budget, grant, amount in zip(items, units, keys, budgets, grants, amounts):
            old = self.held.get(item)
            if old is not None:
                self.close(old)
            lease = self.held[item] = Lease(item, rid, key, unit, grant - amount, deadline, budget, inflight=1)
            taken.append((lease, amount))
        self.count += 1
        asyncio.get_running_loop().call_later(max(deadline - time.monotonic(), 0.0), self._expire,
                                              [lease for lease, _ in taken])
        return taken

    def settle(self, taken: Taken, actual: int, tokens: int) -> None:
        """A request admitted on leases ended: `actual` units spent, `tokens` used."""
        for lease, amount in taken:
            used = actual if lease.unit == "usd" else tokens if lease.unit == "tok" else amount
            lease.left += amount - used
            lease.used += used
            lease.inflight -= 1
            if not lease.open and lease.inflight == 0:
                self._give_back(lease)

    def close(self, lease: Lease) -> None:
        """No more admissions on `lease`; it is returned now if nothing admitted on it is still running."""
        if not lease.open:
            return
        lease.open = False
        if self.held.get(lease.item) is lease:
            del self.held[lease.item]
        if lease.inflight == 0:
            self._give_back(lease)

    def close_all(self) -> None:
        for lease in list(self.held.values()):
            self.close(lease)

    def _expire(self, leases: list[Lease]) -> None:
        for lease in leases:
            self.close(lease)

