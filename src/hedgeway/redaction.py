"""Removing secrets and stack traces from text before it leaves the gateway.

    redactor = Redactor(config_secrets(config))   # built once at start-up
    redactor(text) -> str            # error messages, log lines: by value, then key-like patterns, no traces
    redactor.relayed(chunk) -> bytes # relayed stream bytes: error events only, by value and by pattern

By value: every configured credential (each deployment's api_key and header values, the master key, and
every `os.environ/NAME` value the config resolved), so a key the upstream echoes back in any form of text is
gone even when it matches no pattern. By pattern (`SECRETISH`): `sk-…`, `key_…`, Google's `AIza…` and the
like, for keys the gateway never knew (another tenant's key quoted by the upstream). A Python stack trace
(`Traceback (most recent call last)` / `File "…", line N`) is cut to its last line, the exception itself.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable

MASK = "[redacted]"
MIN_SECRET = 8  # shorter values (a port, "true") would mask ordinary text
SECRETISH = re.compile(r"(?:sk|pk|key|api|tok)[-_][A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{20,}", re.IGNORECASE)
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"\n]*\", line \d+")
ENV_PREFIX = "os.environ/"


def env_secrets(raw: Any) -> list[str]:
    """The value of every `os.environ/NAME` string anywhere in a raw config mapping."""
    if isinstance(raw, str):
        name = raw[len(ENV_PREFIX):] if raw.startswith(ENV_PREFIX) else None
        return [os.environ[name]] if name and os.environ.get(name) else []
    if isinstance(raw, dict):
        raw = raw.values()
    if isinstance(raw, (list, tuple, type({}.values()))):
        return [s for item in raw for s in env_secrets(item)]
    return []


def untraced(text: str) -> str:
    """`text` without a Python stack trace: what precedes it plus the trace's last line (the exception)."""
    match = TRACE.search(text)
    if match is None:
        return text
    head = text[:match.start()].rstrip(" :\n\"'{[")
    tail = [ln.strip() for ln in text[match.start():].splitlines() if ln.strip()]
    last = tail[-1] if tail and not TRACE.search(tail[-1]) else ""
    last = re.sub(r"[\"'}\]]+$", "", last)[:160]
    return " ".join(p for p in (head[-200:], last, "(stack trace removed)") if p)


class Redactor:
    __slots__ = ("values", "_bytes")

    def __init__(self, secrets: Iterable[str]):
        # Longest first: a key that contains another configured key is masked whole.
        self.values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._bytes = [(s.encode(), MASK.encode()) for s in self.values]

    def __call__(self, text: str) -> str:
        return SECRETISH.sub(MASK, self.by_value(untraced(text)))

    def relayed(self, data: bytes) -> bytes:
        """Relayed stream bytes: untouched unless they hold an error event (one substring test per chunk on
        the hot path); then masked by value and by pattern (the pattern keeps JSON valid)."""
        if b'"error"' not in data:
            return data
        for secret, mask in self._bytes:
            if secret in data:
                data = data.replace(secret, mask)
        return SECRETISH.sub(MASK, data.decode("utf-8", "replace")).encode()

    def by_value(self, text: str) -> str:
        for secret in self.values:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def log_filter(self) -> logging.Filter:
        """A handler filter that redacts every record's message (as `__call__`) and masks credentials in the
        traceback of a `log.exception` (by value: the gateway's own traces stay readable)."""
        redact = self

        class _Filter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                message = record.getMessage()
                clean = redact(message)
                if clean != message:
                    record.msg, record.args = clean, None
                if record.exc_info and not record.exc_text:
                    record.exc_text = logging.Formatter().formatException(record.exc_info)
                if record.exc_text:
                    record.exc_text = redact.by_value(record.exc_text)
                return True
        return _Filter()
