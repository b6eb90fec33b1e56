"""How a scenario's queries become device batches.

- Offline: the one big query is cut into chunks of at most the batch size, on multi-device
  systems at least four per device (devices start sooner and pipeline), their number a multiple of the device count so
  every device gets the same share (no idle cards at the tail). The batch builder orders the
  query first (sorted: longest first; packed: the whole query packed, row by row) and says where
  it may be cut (packed: between rows only).
- Server: samples wait in arrival order; a batch goes when it is full, when its oldest sample
  has waited ``max_wait_s``, or (``dispatch_when_idle``) as soon as a device has nothing to do
  and at least ``min_batch`` samples wait.
- SingleStream: every query goes at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np

from packed_bert.harness.workers import WorkItem

Submit = Callable[[WorkItem], None]


def offline_chunks(
    n: int, batch_size: int, devices: int, per_device: int = 1, cuts: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks an Offline query of ``n`` samples is cut into: at most
    ``batch_size`` each (about, when ``cuts`` is given), at least ``per_device`` per device, a
    multiple of ``devices`` in all. ``cuts``: the positions a chunk may end at (sorted, ending
    with ``n``; packed: the row ends); each chunk then gets an equal share of them, i.e. equal
    rows, the unit of a device's work."""
    if n <= 0:
        return []
    count = max(math.ceil(n / batch_size), devices * per_device)
    count = min(n, math.ceil(count / devices) * devices)
    if cuts is not None and len(cuts):
        allowed = np.asarray(cuts, dtype=np.int64)
        share = np.ceil(np.arange(1, count + 1) * allowed.size / count).astype(np.int64) - 1
        ends = np.unique(np.append(allowed[share], n))  # share: 0 .. allowed.size - 1
    else:
        size = math.ceil(n / count)
        ends = np.minimum(np.arange(size, n + size, size), n)
    ends = ends[ends > 0]
    starts = np.concatenate(([0], ends[:-1]))
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


class OfflineScheduler:
    def __init__(
        self,
        submit: Submit,
        batch_size: int,
        devices: int,
        plan: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None = None,
        per_device: int = 1,
    ) -> None:
        self.submit = submit
        self.per_device = per_device
        self.batch_size = batch_size
        self.devices = devices
        self.plan = plan

    def add(self, ids: np.ndarray, indices: np.ndarray, now: float) -> None:
        cuts = None
        if self.plan is not None:
            perm, cuts = self.plan(indices)
            ids, indices = ids[perm], indices[perm]
        arrival = np.full(ids.shape[0], now)
        for start, stop in offline_chunks(ids.shape[0], self.batch_size, self.devices, self.per_device, cuts):
            self.submit(WorkItem(ids[start:stop], indices[start:stop], arrival[start:stop]))

    def flush(self) -> None:
        """Offline queries are dispatched whole; nothing waits."""

    def close(self) -> None:
        pass


class SingleStreamScheduler(OfflineScheduler):
    """Each query (one sample) goes straight to a device."""

    def __init__(self, submit: Submit) -> None:
        super().__init__(submit, batch_size=1, devices=1)

    def add(self, ids: np.ndarray, indices: np.ndarray, now: float) -> None:
        self.submit(WorkItem(ids, indices, np.full(ids.shape[0], now)))


class ServerScheduler:
    """Arrival-order batches: full, waited long enough, or a device is idle."""

    def __init__(
        self,
        submit: Submit,
        batch_size: int,
        max_wait_s: float,
        idle: Callable[[], bool] | None = None,
        min_batch: int = 1,
    ) -> None:
        self.submit = submit
        self.min_batch = min_batch
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.idle = idle
        self._cond = threading.Condition()
        self._ids: list[np.ndarray] = []
        self._indices: list[np.ndarray] = []
        self._arrival: list[np.ndarray] = []
        self._pending = 0
        self._oldest = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="server-batcher", daemon=True)
        self._thread.start()

    def add(self, ids: np.ndarray, indices: np.ndarray, now: float) -> None:
        with self._cond:
            if not self._pending:
                self._oldest = now
            self._ids.append(ids)
            self._indices.append(indices)
            self._arrival.append(np.full(ids.shape[0], now))
            self._pending += ids.shape[0]
            self._cond.notify()

    def poke(self) -> None:
        """A device became idle: reconsider the pending samples."""
        with self._cond:
            if self._pending:
                self._cond.notify()

    def flush(self) -> None:
        with self._cond:
            items = self._take(keep_tail=False)
        for item in items:
            self.submit(item)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5.0)
        self.flush()

    def _take(self, keep_tail: bool) -> list[WorkItem]:
        """The pending samples as batches of at most ``batch_size``; with ``keep_tail`` a
        partial last batch stays waiting when full ones go (it may still fill up)."""
        if not self._pending:
            return []
        ids = np.concatenate(self._ids)
        indices = np.concatenate(self._indices)
        arrival = np.concatenate(self._arrival)
        self._ids, self._indices, self._arrival = [], [], []
        self._pending = 0
        b = self.batch_size
        items = [WorkItem(ids[s : s + b], indices[s : s + b], arrival[s : s + b]) for s in range(0, ids.shape[0], b)]
        if keep_tail and len(items) > 1 and len(items[-1]) < b:
            tail = items.pop()
            self._ids, self._indices, self._arrival = [tail.ids], [tail.indices], [tail.arrival]
            self._pending = len(tail)
            self._oldest = float(tail.arrival[0])
        return items

    def _due(self, now: float) -> bool:
        if not self._pending:
            return False
        if self._pending >= self.batch_size or now - self._oldest >= self.max_wait_s:
            return True
        return self._pending >= self.min_batch and self.idle is not None and self.idle()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.perf_counter()
                    if self._due(now):
                        break
                    timeout = (self._oldest + self.max_wait_s - now) if self._pending else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                items = self._take(keep_tail=True)
            for item in items:
                self.submit(item)
