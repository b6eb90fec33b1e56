"""Device workers: threads that build a batch, run it on their device and answer LoadGen.

Each device has one runner and ``inflight`` threads; the threads share the runner but take
turns on it (a per-device lock around ``infer``), so one batch is packed and answered while
the previous one runs. All devices take work from one queue, so a fast device simply takes
more. When any worker raises, the pool records the first error and from then on answers every
sample it is given with an empty response at once, so LoadGen finishes and never hangs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from packed_bert.backends.base import Runner


@dataclass
class WorkItem:
    """Samples of one batch: query sample ids, QSL indices and their arrival times."""

    ids: np.ndarray  # uint64
    indices: np.ndarray  # int64
    arrival: np.ndarray  # float64 perf_counter seconds, one per sample
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


Build = Callable[[WorkItem], Any]
Respond = Callable[[WorkItem, Any, np.ndarray, int, float], None]
RespondEmpty = Callable[[WorkItem], None]


class DevicePool:
    """Worker threads over ``runners`` (one per device)."""

    def __init__(
        self,
        runners: Sequence[Runner],
        build: Build,
        respond: Respond,
        respond_empty: RespondEmpty,
        inflight: int = 1,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        if not runners:
            raise ValueError("a device pool needs at least one runner")
        self.runners = list(runners)
        self._build = build
        self._respond = respond
        self._respond_empty = respond_empty
        self._on_idle = on_idle
        self._queue: queue.Queue[WorkItem | None] = queue.Queue()
        self._locks = [threading.Lock() for _ in self.runners]
        self._active = [0] * len(self.runners)
        self._state = threading.Lock()
        self._outstanding = 0
        self._drained = threading.Condition(self._state)
        self.error: BaseException | None = None
        self.error_device: int | None = None
        self._threads = [
            threading.Thread(target=self._loop, args=(d,), name=f"device-{d}-{i}", daemon=True)
            for d in range(len(self.runners))
            for i in range(max(1, inflight))
        ]

    @property
    def devices(self) -> int:
        return len(self.runners)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, item: WorkItem) -> None:
        if self.error is not None:
            self._respond_empty(item)
            return
        with self._state:
            self._outstanding += 1
        self._queue.put(item)

    def queued(self) -> int:
        return self._queue.qsize()

    def has_idle_device(self) -> bool:
        """True when some device has no batch at all and nothing waits in the queue."""
        return self._queue.empty() and min(self._active) == 0

    def fail(self, exc: BaseException, device: int | None = None) -> None:
        """Record the first error; later work is answered empty."""
        with self._state:
            if self.error is None:
                self.error = exc
                self.error_device = device

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted item has been answered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._drained:
            while self._outstanding:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._drained.wait(left)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        for _ in self._threads:
            self._queue.put(None)
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def _loop(self, device: int) -> None:
        runner = self.runners[device]
        lock = self._locks[device]
        while True:
            item = self._queue.get()
            if item is None:
                return
            with self._state:
                self._active[device] += 1
            try:
                if self.error is not None:
                    self._respond_empty(item)
                else:
                    self._run(device, runner, lock, item)
            finally:
                with self._state:
                    self._active[device] -= 1
                    self._outstanding -= 1
                    if not self._outstanding:
                        self._drained.notify_all()
                if self._on_idle is not None:
                    self._on_idle()

    def _run(self, device: int, runner: Runner, lock: threading.Lock, item: WorkItem) -> None:
        try:
            batch = self._build(item)
            with lock:
                t0 = time.perf_counter()
                logits = runner.infer(batch)
                busy = time.perf_counter() - t0
            self._respond(item, batch, logits, device, busy)
        except BaseException as exc:  # noqa: BLE001 - any failure must end in an answer
            self.fail(exc, device)
            self._respond_empty(item)
