"""The ledger's local spool: records the database could not take wait here, on disk, until it can.

Contract:
  * `append(records)` writes one batch to this process's spool file and fsyncs it before returning True;
    it returns False (writing nothing) when the spool is full (`max_bytes`) or the disk fails, and the
    caller keeps the records in memory.
  * `replay(write, batch_size)` feeds every spooled record back through `write(list[Record])` in order,
    oldest first, and empties the spool only after every write succeeded. A write that raises leaves the
    spool as it was. Replay may therefore repeat records already stored (a crash or an error half-way):
    the stores insert with ON CONFLICT (request_id) DO NOTHING, which makes that exactly-once in the table.
  * Thread-safe: the writer thread and a shutting-down main thread may both call it.

Layout: a directory (created on first use) of append-only JSON-lines files, one per process,
`<ledger-hash>-<pid>-<random>.jsonl`, each held under an exclusive `flock` while its process lives. A new
process adopts the files of dead processes for the same ledger (same hash of the ledger URL, so a spool
directory shared by two gateways never replays into the wrong database) and deletes them once replayed.
A torn last line (the process died mid-append, before its fsync returned) is skipped with a warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Callable, Sequence

import orjson

from hedgeway.ledger.base import RECORD_FIELDS, Record

log = logging.getLogger("hedgeway.ledger")
_FIELDS = frozenset(RECORD_FIELDS)


def _dump(r: Record) -> bytes:
    d = {f: getattr(r, f) for f in RECORD_FIELDS}
    d["cost"], d["saved"] = format(r.cost, "f"), format(r.saved, "f")  # exact text, never float
    return orjson.dumps(d) + b"\n"


def _load(line: bytes) -> Record:
    d = {k: v for k, v in orjson.loads(line).items() if k in _FIELDS}  # tolerate fields of other versions
    d["cost"], d["saved"] = Decimal(d.get("cost", "0")), Decimal(d.get("saved", "0"))
    return Record(**d)


class Spool:
    def __init__(self, directory: str | Path, ledger_id: str, max_bytes: int = 256 << 20, *,
                 prefix: str | None = None, adopt: bool = True):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.prefix = prefix or hashlib.sha256(ledger_id.encode()).hexdigest()[:12]
        self.spooled = 0  # records appended, total
        self.replayed = 0  # records fed back to the store, total
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes in our own file
        self._adopted: dict[Path, int] = {}  # dead processes' files (fd holding their lock), replayed first
        if adopt and self.directory.is_dir():
            self._adopt()

    @property
    def pending(self) -> bool:
        """True while anything waits to be replayed (ours or adopted)."""
        return bool(self._size or self._adopted)

    @property
    def full(self) -> bool:
        return self._size >= self.max_bytes

    def _adopt(self) -> None:
        for path in sorted(self.directory.glob(f"{self.prefix}-*.jsonl")):
            if path == self._path or path in self._adopted:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:  # free only if its process is gone; kept locked, so a sibling worker never takes it too
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live process's spool
            self._adopted[path] = fd
        if self._adopted:
            log.warning("ledger spool: adopted %d file(s) of stopped processes in %s", len(self._adopted),
                        self.directory)

    def _open(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"{self.prefix}-{os.getpid()}-{os.urandom(4).hex()}.jsonl"
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        return self._fd

    def sibling(self) -> "Spool":
        """Another spool file of the same ledger in the same directory (for a rescue while this one is
        busy); the next process adopts it."""
        return Spool(self.directory, "", self.max_bytes, prefix=self.prefix, adopt=False)

    def append(self, records: Sequence[Record], timeout: float = -1) -> bool:
        """Write and fsync one batch; False (nothing written) when full, the disk fails, or the spool
        stays busy for `timeout` seconds (default: wait)."""
        data = b"".join(map(_dump, records))
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            if self._size + len(data) > self.max_bytes:
                return False
            try:
                fd = self._open()
                if os.write(fd, data) != len(data):
                    raise OSError(28, "short write")
                os.fsync(fd)
            except OSError as exc:
                log.error("ledger spool: cannot write %s (%s)", self.directory, exc.strerror)
                if self._fd is not None:  # drop a partial batch: the caller keeps it in memory
                    try:
                        os.ftruncate(self._fd, self._size)
                    except OSError:
                        pass
                return False
            self._size += len(data)
            self.spooled += len(records)
            return True
        finally:
            self._lock.release()

    def replay(self, write: Callable[[list[Record]], None], batch_size: int) -> int:
        """Write every spooled record through `write`, oldest file first; raises what `write` raises."""
        with self._lock:
            done = 0
            for path, fd in list(self._adopted.items()):
                done += self._replay_file(path, write, batch_size)
                path.unlink(missing_ok=True)
                os.close(fd)
                del self._adopted[path]
            if self._size:
                done += self._replay_file(self._path, write, batch_size)
                os.ftruncate(self._fd, 0)  # O_APPEND: the next append starts at 0 again
                os.fsync(self._fd)
                self._size = 0
            self.replayed += done
            return done

    @staticmethod
    def _replay_file(path: Path, write: Callable[[list[Record]], None], batch_size: int) -> int:
        batch: list[Record] = []
        done = 0
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    batch.append(_load(line))
                except (ValueError, TypeError, AttributeError, ArithmeticError) as exc:  # torn or foreign line
                    log.warning("ledger spool: skipping unreadable line %d of %s (%s)", n, path.name,
                                type(exc).__name__)
                    continue
                if len(batch) >= batch_size:
                    write(batch)
                    done += len(batch)
                    batch = []
        if batch:
            write(batch)
            done += len(batch)
        return done

    def close(self) -> None:
        """Release our files; an empty one is deleted, a non-empty one waits for the next process."""
        with self._lock:
            for fd in self._adopted.values():
                os.close(fd)
            self._adopted.clear()
            if self._fd is None:
                return
            os.close(self._fd)
            self._fd = None
            if not self._size and self._path is not None:
                self._path.unlink(missing_ok=True)
