"""Device workers: threads that build a batch, run it on their device and answer LoadGen.

Each device has one runner and ``inflight`` threads; the threads share the runner but take
turns on it (a per-device lock around ``infer``), so one batch is packed and answered while
the previous one runs. A ``pipelined`` runner (a device behind a link, e.g. a Ray actor) gets
no lock: it queues the batches for its device itself, so the next one travels while one runs.
All devices take work from one queue, so a fast device simply takes more.

Failures:

- a runner raising ``DeviceLost`` loses its device: the pool stops using it and puts the batch
  back at the head of the queue for the other devices (its other in-flight batch comes back the
  same way), so no sample is lost and none is answered twice. ``lost`` lists the lost devices.
  When the last device is lost the run fails with ``NoDevicesLeft``, as below.
- any other exception fails the run: the pool records the first error and from then on answers
  every sample it is given with an empty response at once, so LoadGen finishes and never hangs.

``inline``: a single device with one thread is served by the thread that calls ``serve`` (the
run's main thread) instead of a thread of its own. OpenMP keeps one pool of worker threads per
thread that opens a parallel region; the main thread has one already (the model was built
there), and with a second pool libgomp counts more threads than CPUs and stops spinning at its
barriers: on the 2-core Xeon an empty parallel region then took 50 us instead of 1, and a
PyTorch/AMX sample 1.45x as long.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from packed_bert.backends.base import DeviceLost, Runner


@dataclass
class WorkItem:
    """Samples of one batch: query sample ids, QSL indices and their arrival times."""

    ids: np.ndarray  # uint64
    indices: np.ndarray  # int64
    arrival: np.ndarray  # float64 perf_counter seconds, one per sample
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class LostDevice:
    """A device the pool stopped using during the run, and why."""

    device: int  # index in the pool's runners
    runner: str  # the runner's name and device
    reason: str
    resent: int  # batches it had in flight, sent to the other devices


class NoDevicesLeft(RuntimeError):
    """Every device of the run was lost."""


Build = Callable[[WorkItem], Any]
Respond = Callable[[WorkItem, Any, np.ndarray, int, float], None]
RespondEmpty = Callable[[WorkItem], None]


class DevicePool:
    """Worker threads over ``runners`` (one per device): ``inflight`` threads per device, or
    one count per device."""

    def __init__(
        self,
        runners: Sequence[Runner],
        build: Build,
        respond: Respond,
        respond_empty: RespondEmpty,
        inflight: int | Sequence[int] = 1,
        on_idle: Callable[[], None] | None = None,
        *,
        inline: bool = False,
    ) -> None:
        if not runners:
            raise ValueError("a device pool needs at least one runner")
        self.runners = list(runners)
        self._build = build
        self._respond = respond
        self._respond_empty = respond_empty
        self._on_idle = on_idle
        self._state = threading.Lock()
        self._ready = threading.Condition(self._state)  # an item waits, or the pool stops
        self._drained = threading.Condition(self._state)  # nothing is outstanding
        self._items: deque[WorkItem] = deque()
        self._closed = False
        self._locks = [threading.Lock() for _ in self.runners]
        self._active = [0] * len(self.runners)
        self._lost: dict[int, LostDevice] = {}
        self._outstanding = 0
        self.error: BaseException | None = None
        self.error_device: int | None = None
        depth = [inflight] * len(self.runners) if isinstance(inflight, int) else list(inflight)
        if len(depth) != len(self.runners):
            raise ValueError("inflight: one count per runner")
        # inline: the caller of ``serve`` is the device's only thread
        self.inline = inline and len(self.runners) == 1 and max(1, depth[0]) == 1
        self._threads = [
            threading.Thread(target=self._loop, args=(d,), name=f"device-{d}-{i}", daemon=True)
            for d in range(len(self.runners))
            for i in range(max(1, depth[d]))
            if not self.inline
        ]

    @property
    def devices(self) -> int:
        return len(self.runners)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def lost(self) -> list[LostDevice]:
        """The devices lost so far, in the order they were lost."""
        with self._state:
            return list(self._lost.values())

    def lost_line(self) -> str | None:
        """One line for the run's result when devices were lost (``None`` when none was)."""
        lost = self.lost
        if not lost:
            return None
        each = "; ".join(
            f"device {d.device} ({d.runner}): {d.reason}, {d.resent} batch{'es' if d.resent != 1 else ''} re-sent"
            for d in lost
        )
        return f"{len(lost)} of {self.devices} devices lost during the run: {each}"

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def serve(self) -> None:
        """An ``inline`` pool's device loop, on the calling thread, until ``close`` (an interrupt
        in between is raised here; ``answer_queued_empty`` then answers what waits)."""
        if self.inline:
            self._loop(0)

    def close(self) -> None:
        """No more work: the threads, and ``serve``, end once the queue is empty."""
        with self._state:
            self._closed = True
            self._ready.notify_all()

    def answer_queued_empty(self) -> None:
        """Answer everything still queued with empty responses (after ``fail``: an interrupted
        ``serve`` takes nothing more, and later work is answered as it comes)."""
        with self._state:
            left = list(self._items)
            self._items.clear()
            self._outstanding -= len(left)
            if not self._outstanding:
                self._drained.notify_all()
        for item in left:
            self._respond_empty(item)

    def submit(self, item: WorkItem) -> None:
        with self._state:
            if self.error is None:
                self._outstanding += 1
                self._items.append(item)
                self._ready.notify()
                return
        self._respond_empty(item)

    def queued(self) -> int:
        return len(self._items)

    def has_idle_device(self) -> bool:
        """True when some device still in use has no batch at all and nothing waits."""
        with self._state:
            live = [a for d, a in enumerate(self._active) if d not in self._lost]
            return not self._items and bool(live) and min(live) == 0

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
        """Let the threads finish what is queued, then end them."""
        self.close()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    # the threads ---------------------------------------------------------------------------

    def _take(self, device: int) -> WorkItem | None:
        """The next item for ``device``; ``None`` when the device is lost or the pool stopped."""
        with self._state:
            while True:
                if device in self._lost:
                    return None
                if self._items:
                    self._active[device] += 1
                    return self._items.popleft()
                if self._closed:
                    return None
                self._ready.wait()

    def _loop(self, device: int) -> None:
        runner = self.runners[device]
        pipelined = bool(getattr(runner, "pipelined", False))
        lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext() if pipelined else self._locks[device]
        while True:
            item = self._take(device)
            if item is None:
                return
            answered = True
            try:
                if self.error is not None:
                    self._respond_empty(item)
                else:
                    answered = self._run(device, runner, lock, item)
            finally:
                self._settle(device, 1 if answered else 0)
            if self._on_idle is not None:
                self._on_idle()

    def _settle(self, device: int, answered: int) -> None:
        with self._state:
            self._active[device] -= 1
            self._outstanding -= answered
            if not self._outstanding:
                self._drained.notify_all()

    def _run(self, device: int, runner: Runner, lock: contextlib.AbstractContextManager[Any], item: WorkItem) -> bool:
        """Run ``item`` on ``device`` and answer it; ``False`` when it went back to the queue."""
        try:
            batch = self._build(item)
            with lock:
                t0 = time.perf_counter()
                logits = runner.infer(batch)
                busy = time.perf_counter() - t0
        except DeviceLost as exc:
            return self._lose(device, runner, exc, item)
        except BaseException as exc:  # noqa: BLE001 - any failure must end in an answer
            self.fail(exc, device)
            self._respond_empty(item)
            return True
        try:
            self._respond(item, batch, logits, device, busy)
        except BaseException as exc:  # noqa: BLE001
            self.fail(exc, device)
            self._respond_empty(item)
        return True

    def _lose(self, device: int, runner: Runner, exc: DeviceLost, item: WorkItem) -> bool:
        """``device`` is gone: give ``item`` to the others (``False``), or, with no device
        left, fail the run and answer it and everything queued empty (``True``)."""
        reason = str(exc).replace("\n", " ")
        with self._state:
            known = self._lost.get(device)
            resent = (known.resent if known else 0) + 1
            name = f"{getattr(runner, 'name', '?')} {getattr(runner, 'device', '?')}"
            self._lost[device] = LostDevice(device, name, known.reason if known else reason, resent)
            self._ready.notify_all()  # the device's other threads end
            if len(self._lost) < len(self.runners):
                self._items.appendleft(item)  # first in line: its samples waited longest
                self._ready.notify()
                return False
            if self.error is None:
                lost = "; ".join(f"device {d.device} ({d.runner}): {d.reason}" for d in self._lost.values())
                self.error = NoDevicesLeft(f"all {len(self.runners)} devices were lost: {lost}")
                self.error_device = device
        self.answer_queued_empty()  # the error is set: nothing joins the queue any more
        self._respond_empty(item)  # counted as answered by the caller
        return True
