"""Cost of the stream relay's per-chunk work (sse.UsageTap.feed): plain, with credential scrubbing (two
configured secrets), and with scrubbing plus the output cap. Prints µs per chunk (CPU time, the best of 7 runs: the machine is shared) for
OpenAI-style one-token chunks. `python bench/usage_tap.py`"""

from __future__ import annotations

import time

import orjson

from hedgeway.redaction import Redactor
from hedgeway.sse import UsageTap

CHUNKS = [b"data: " + orjson.dumps({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1,
                                    "model": "m", "choices": [{"index": 0, "delta": {"content": f" tok{i}"},
                                                               "finish_reason": None}]}) + b"\n\n"
          for i in range(2000)]
SCRUB = Redactor(["sk-hedgeway-master-0123456789", "AIzaSyD4fake0123456789abcdefghijklmnopq"]).relayed


def run(**kw) -> float:
    times = []
    for _ in range(7):
        tap = UsageTap(False, **kw)
        start = time.process_time()
        for chunk in CHUNKS:
            tap.feed(chunk)
        times.append((time.process_time() - start) / len(CHUNKS) * 1e6)
    return min(times)


if __name__ == "__main__":
    for name, kw in (("plain", {}), ("scrub", {"scrub": SCRUB}), ("scrub+cap", {"scrub": SCRUB, "cap": 10**6})):
        print(f"{name:10s} {run(**kw):.2f} µs/chunk")
