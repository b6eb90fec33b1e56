"""The LoadGen system under test: issue_queries -> scheduler -> device workers -> responses.

Responses are built per batch with array operations: the logits of all the batch's sequences
are gathered into one contiguous float32 buffer, and each sample's response points into it
(address + offset, size = real tokens x 2 x 4 bytes). The buffer lives until
``QuerySamplesComplete`` has returned (LoadGen copies what it logs during that call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from packed_bert.backends.base import Runner
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.scheduler import OfflineScheduler, ServerScheduler, SingleStreamScheduler
from packed_bert.harness.workers import DevicePool, WorkItem
from packed_bert.progress import Progress
from packed_bert.terms import SEQ_LEN

Complete = Callable[[list[Any]], None]


@dataclass
class RunStats:
    """What the SUT saw: one record per batch and the latency of every sample."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    batch_samples: list[int] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)
    batch_row_len: list[int] = field(default_factory=list)
    batch_tokens: list[int] = field(default_factory=list)
    batch_per_row: list[np.ndarray] = field(default_factory=list)  # sequences per row
    batch_done: list[float] = field(default_factory=list)
    batch_busy: list[float] = field(default_factory=list)
    batch_device: list[int] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)
    sample_tokens: list[np.ndarray] = field(default_factory=list)  # real tokens of each sample, as latencies
    start: float = field(default_factory=time.perf_counter)

    def record(self, item: WorkItem, batch: Any, device: int, busy: float, done: float) -> None:
        index = np.asarray(batch.sample_index)
        filled = index >= 0
        per_row = filled.sum(axis=1).astype(np.int8)
        tokens = np.zeros(len(item), np.int32)  # in the item's order, as its arrival times
        tokens[index[filled]] = np.asarray(batch.seq_lens)[filled]
        with self.lock:
            self.batch_samples.append(len(item))
            self.batch_rows.append(int(batch.input_ids.shape[0]))
            self.batch_row_len.append(int(batch.input_ids.shape[1]))
            self.batch_tokens.append(int(np.asarray(batch.seq_lens).sum()))
            self.batch_per_row.append(per_row)
            self.batch_done.append(done - self.start)
            self.batch_busy.append(busy)
            self.batch_device.append(device)
            self.latencies.append(done - item.arrival)
            self.sample_tokens.append(tokens)

    def summary(self) -> dict[str, Any]:
        samples = int(sum(self.batch_samples))
        slots = int(sum(r * n for r, n in zip(self.batch_rows, self.batch_row_len, strict=True)))
        tokens = int(sum(self.batch_tokens))
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0)
        out: dict[str, Any] = {
            "batches": len(self.batch_samples),
            "samples": samples,
            "rows": int(sum(self.batch_rows)),
            "real_tokens": tokens,
            "token_slots": slots,
            "token_efficiency": tokens / slots if slots else None,
            "padded_token_efficiency": tokens / (samples * SEQ_LEN) if samples else None,
        }
        if slots:
            out["gain_over_padding"] = (samples * SEQ_LEN) / slots
        if self.sample_tokens:  # a sample's own length: SingleStream's p90 is the p90-length sample's latency
            toks = np.concatenate(self.sample_tokens)
            out["sample_tokens"] = {
                p: int(np.percentile(toks, q, method="higher")) for p, q in (("p50", 50), ("p90", 90), ("max", 100))
            }
            # the run's real-token work: linear layers scale with the tokens, attention per sequence
            # with each sample's length squared
            wide = toks.astype(np.int64)
            out["sample_tokens"].update(total=int(wide.sum()), sum_of_squares=int((wide * wide).sum()))
        if lat.size:
            out["sut_latency_ms"] = {
                p: float(np.percentile(lat, q) * 1e3) for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
            }
        return out


class BenchmarkSUT:
    """Owns the scheduler and the device pool of one run."""

    def __init__(
        self,
        builder: BatchBuilder,
        runners: Sequence[Runner],
        scenario: str,
        batch_size: int,
        inflight: int = 1,
        server_max_wait_s: float = 0.05,
        dispatch_when_idle: bool = True,
        progress: Progress | None = None,
        complete: Complete | None = None,
        offline_chunks_per_device: int = 4,
        server_min_batch: int = 1,
        serve_inline: bool = False,
    ) -> None:
        self.builder = builder
        self.scenario = scenario
        self.progress = progress
        self.stats = RunStats()
        self._complete: Complete = complete or lg.QuerySamplesComplete
        # Server/SingleStream: one thread per device, so a batch is only taken by a device that
        # is free (a second thread would take it and wait for its busy device while another
        # device idles); Offline: ``inflight`` threads, so the next chunk is built meanwhile,
        # or more where a runner asks for more (``runner.inflight``: a device actor keeps two
        # batches in flight, one travelling while one runs)
        threads = [max(inflight, int(getattr(r, "inflight", 1))) if scenario == "Offline" else 1 for r in runners]
        # serve_inline: a single device is served by the caller's ``pool.serve`` (``run_loadgen``)
        self.pool = DevicePool(
            runners, self._build, self._respond, self._respond_empty, threads, self._on_idle, inline=serve_inline
        )
        self.scheduler: OfflineScheduler | ServerScheduler
        if scenario == "Offline":
            self.scheduler = OfflineScheduler(
                self.pool.submit,
                batch_size,
                self.pool.devices,
                builder.plan_offline,
                per_device=offline_chunks_per_device if self.pool.devices > 1 else 1,
            )
        elif scenario == "Server":
            self.scheduler = ServerScheduler(
                self.pool.submit,
                batch_size,
                server_max_wait_s,
                self.pool.has_idle_device if dispatch_when_idle else None,
                min_batch=server_min_batch,
            )
        else:
            self.scheduler = SingleStreamScheduler(self.pool.submit)
        self.issued = 0
        self.pool.start()

    # LoadGen callbacks -------------------------------------------------------------------
    def issue_queries(self, samples: list[Any]) -> None:
        now = time.perf_counter()
        n = len(samples)
        self.issued += n
        ids, indices = _ids_indices(samples)
        if self.progress is not None and self.scenario == "Offline":  # time left by tokens: longest go first
            self.progress.total = max(self.progress.total, self.issued)
            self.progress.add_work(self._tokens(indices))
        self.scheduler.add(ids, indices, now)

    def flush_queries(self) -> None:
        self.scheduler.flush()

    def construct(self) -> Any:
        return lg.ConstructSUT(self.issue_queries, self.flush_queries)

    def close(self) -> None:
        self.scheduler.close()
        self.pool.wait_idle(timeout=30.0)
        self.pool.stop()

    # device worker callbacks -------------------------------------------------------------
    def _build(self, item: WorkItem) -> Any:
        return self.builder.build(item.indices)

    def _respond(self, item: WorkItem, batch: Any, logits: np.ndarray, device: int, busy: float) -> None:
        buf = np.ascontiguousarray(logits, dtype=np.float32)
        seq_lens = np.asarray(batch.seq_lens, dtype=np.int64)
        rows, row_len = buf.shape[0], buf.shape[1]
        if buf.shape != (rows, row_len, 2) or seq_lens.shape[0] != rows:
            raise RuntimeError(f"device {device} returned logits of shape {buf.shape}")
        filled = np.asarray(batch.sample_index) >= 0
        sample = np.asarray(batch.sample_index)[filled]
        if sample.shape[0] != len(item):
            raise RuntimeError(f"device {device} answered {sample.shape[0]} of the batch's {len(item)} samples")
        # each sequence's logits are one contiguous range of the [R, L, 2] buffer
        starts = np.cumsum(seq_lens, axis=1) - seq_lens
        row_of = np.broadcast_to(np.arange(rows)[:, None], filled.shape)[filled]
        addrs = (buf.ctypes.data + (row_of * row_len + starts[filled]) * 8).tolist()
        sizes = (seq_lens[filled] * 8).tolist()
        qids = item.ids[sample].tolist()
        qsr = lg.QuerySampleResponse
        responses = [qsr(i, a, s) for i, a, s in zip(qids, addrs, sizes, strict=True)]
        self.stats.record(item, batch, device, busy, time.perf_counter())
        self._complete(responses)
        del buf  # kept alive until here, after LoadGen copied what it logs
        if self.progress is not None:
            self.progress.update(len(item), self._tokens(item.indices))

    def _respond_empty(self, item: WorkItem) -> None:
        qsr = lg.QuerySampleResponse
        self._complete([qsr(i, 0, 0) for i in item.ids.tolist()])
        if self.progress is not None:
            self.progress.update(len(item), self._tokens(item.indices))

    def _tokens(self, indices: np.ndarray) -> float:
        """The samples' real tokens (what an encoder's time goes with), for the time left."""
        return float(self.builder.library.lengths[indices].sum())

    def _on_idle(self) -> None:
        if isinstance(self.scheduler, ServerScheduler):
            self.scheduler.poke()


def _ids_indices(samples: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    n = len(samples)
    ids = np.fromiter((s.id for s in samples), dtype=np.uint64, count=n)
    indices = np.fromiter((s.index for s in samples), dtype=np.int64, count=n)
    return ids, indices
