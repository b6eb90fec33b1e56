"""A one-line progress display for long work: items done, rate and time left.

Time left and the percentage done are by work, not by count, where the caller says how much each
item weighs (``add_work``, ``update(n, work)``): an Offline run's batches go longest first, so its
first samples take the longest and a count-based estimate starts several times too high.
"""

import sys
import threading
import time
from typing import TextIO


class Progress:
    """Thread-safe progress counter that redraws one terminal line at most ``hz`` times a second.

    On a stream that is not a terminal it prints a plain line every ``log_every_s`` seconds
    instead, so logs stay readable.
    """

    def __init__(
        self,
        total: int,
        label: str,
        unit: str = "samples",
        stream: TextIO | None = None,
        hz: float = 4.0,
        log_every_s: float = 10.0,
        enabled: bool = True,
        min_seconds: float = 0.0,
    ) -> None:
        self.total = max(int(total), 0)
        # work that ends once it has lasted min_seconds and done ``total`` (LoadGen's SingleStream):
        # how many it will do is read off the rate so far
        self.min_seconds = max(float(min_seconds), 0.0)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._min_interval = 1.0 / hz if self._tty else log_every_s
        self._lock = threading.Lock()
        self._done = 0
        self._work_total = 0.0  # what the items issued so far weigh (0: time left by count)
        self._work_done = 0.0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    @property
    def done(self) -> int:
        return self._done

    def add_work(self, amount: float) -> None:
        """Items that weigh ``amount`` in all were issued (time left is then by weight)."""
        with self._lock:
            self._work_total += float(amount)

    def update(self, n: int, work: float = 0.0) -> None:
        with self._lock:
            self._done += n
            self._work_done += float(work)
            now = time.perf_counter()
            if self.enabled and now - self._last_draw >= self._min_interval:
                self._last_draw = now
                self._draw(now, final=False)

    def close(self) -> None:
        with self._lock:
            if self.enabled:
                self._draw(time.perf_counter(), final=True)

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The text of the progress line (also used by tests). A total that is an estimate (how
        many samples LoadGen will issue in a Server run) never shows more than 100%: past it
        the line reads 99.9% and "left --:--" until the work is done."""
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self._done / elapsed
        total = max(self.total, self._done) if final else self.total
        of = ""  # what the percentage counts, where not the items
        if self.min_seconds > 0 and not final:
            by_count = (total - self._done) / rate if rate > 0 else float("nan")
            left = max(self.min_seconds - elapsed, by_count if by_count == by_count else 0.0, 0.0)
            pct = min(100.0 * elapsed / (elapsed + left), 99.9)
            eta = _fmt_seconds(left) if left > 0 else "--:--"
            shown = f"{self._done}/~{max(total, int(rate * self.min_seconds))}"
        elif self._done >= total and not final and self.total:
            pct, eta = 99.9, "--:--"
            shown = f"{self._done}/~{self.total}"
        else:
            if self._work_total > 0 and self._work_done > 0:  # the same work rate from here on
                left = elapsed * max(self._work_total - self._work_done, 0.0) / self._work_done
                # the share of the work, as the time left is (10% of the samples can be 20% of it)
                pct, of = 100.0 * min(self._work_done / self._work_total, 1.0), " of the work"
            else:
                left = (total - self._done) / rate if rate > 0 and total else float("nan")
                pct = 100.0 * self._done / total if total else 100.0
            eta = "--:--" if left != left else _fmt_seconds(left)
            shown = f"{self._done}/{total}"
        return (
            f"{self.label}: {shown} {self.unit} ({pct:5.1f}%{of}) "
            f"{rate:,.1f} {self.unit}/s, elapsed {_fmt_seconds(elapsed)}, left {eta}"
        )

    def _draw(self, now: float, final: bool) -> None:
        text = self.line(now, final)
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _fmt_seconds(s: float) -> str:
    s = max(int(round(s)), 0)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"
