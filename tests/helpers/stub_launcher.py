"""A stand-in for the harness's run launcher: real LoadGen, a SUT that answers at once.

It writes a run directory as the harness does (LoadGen logs, summary.json, system.json,
user.conf, accuracy.txt) so compliance, power and submission are tested on genuine LoadGen logs.
Responses are float32 ``[qsl_idx, 1, 2, 3 + perturb]``; ``perturb`` changes chosen samples
in performance mode to exercise TEST01's fallback.
"""

import array
import dataclasses
import json
import re
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np

from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import to_argv
from packed_bert.harness.plan import plan_run
from packed_bert.results.loadgen_logs import read_accuracy_log, read_summary
from packed_bert.results.run_dirs import RunDir, run_name
from packed_bert.rounds import get_round
from packed_bert.systems import load_system
from packed_bert.terms import Mode

N_SAMPLES = 64


def payload(idx: int, perturb: float = 0.0) -> np.ndarray:
    return np.array([idx, 1.0, 2.0, 3.0 + perturb], dtype=np.float32)


def stub_scorer(log: Path) -> tuple[float, float]:
    """EM/F1 stand-in: 90 x mean(payload[3] / 3) over the logged samples."""
    values = [np.frombuffer(bytes.fromhex(e.data), np.float32)[3] / 3.0 for e in read_accuracy_log(log)]
    f1 = float(90.0 * np.mean(values)) if values else 0.0
    return f1 - 5.0, f1


@dataclass
class StubLauncher:
    perturb: dict[int, float] = field(default_factory=dict)  # qsl_idx -> change in perf mode
    query_seconds: float = 0.25  # how long the SUT takes per Offline query
    ignore_audit: bool = False
    # a steady device: the summary's score is the stub's nominal rate (N_SAMPLES / query_seconds),
    # not the wall clock of a busy 2-core machine, so audit runs compare as on an idle one
    steady: bool = True
    calls: list[tuple[str, Path | None]] = field(default_factory=list)
    configs: list[RunConfig] = field(default_factory=list)  # every run asked for, in order

    def __call__(self, cfg: RunConfig) -> Path:
        audit_config = cfg.audit_config
        self.calls.append((cfg.mode, audit_config))
        self.configs.append(cfg)
        sut = load_system(cfg.sut).name  # as the harness records it (--sut may be a .toml path)
        rnd = get_round(cfg.round)
        rd = RunDir(cfg.results_dir, run_name(sut, cfg.model, cfg.scenario, cfg.mode))
        run_dir = rd.path
        if audit_config is not None:
            (run_dir / "audit.config").write_text(audit_config.read_text())
        accuracy = cfg.mode == Mode.ACCURACY
        keep: list[array.array] = []

        def answer(queries: list) -> None:
            time.sleep(self.query_seconds)
            responses = []
            for q in queries:
                data = payload(q.index, 0.0 if accuracy else self.perturb.get(q.index, 0.0))
                buf = array.array("B", data.tobytes())
                keep.append(buf)
                addr, n = buf.buffer_info()
                responses.append(lg.QuerySampleResponse(q.id, addr, n))
            lg.QuerySamplesComplete(responses)

        def issue(queries: list) -> None:
            threading.Thread(target=answer, args=(queries,), daemon=True).start()

        lg_sut = lg.ConstructSUT(issue, lambda: None)
        qsl = lg.ConstructQSL(N_SAMPLES, N_SAMPLES, lambda s: None, lambda s: None)
        ts = lg.TestSettings()
        ts.scenario = lg.TestScenario.Offline
        ts.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
        ts.offline_expected_qps = 1000
        ts.min_duration_ms = 50
        ts.min_query_count = 128
        for key, value in {**rnd.seed_settings(), **cfg.loadgen_settings}.items():  # as the harness does
            setattr(ts, key, value)
        log = lg.LogSettings()
        log.log_output.outdir = str(run_dir)
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        audit = "" if (audit_config is None or self.ignore_audit) else str(run_dir / "audit.config")
        lg.StartTestWithLogSettings(lg_sut, qsl, ts, log, audit)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(lg_sut)
        if self.steady and not accuracy:
            log_path = run_dir / "mlperf_log_summary.txt"
            nominal = N_SAMPLES / self.query_seconds
            log_path.write_text(
                re.sub(r"(?m)^(Samples per second\s*:\s*)[\d.]+", rf"\g<1>{nominal:.3f}", log_path.read_text())
            )

        summary: dict = {
            "sut": sut,
            "model": cfg.model,
            "scenario": cfg.scenario,
            "mode": cfg.mode,
            "round": rnd.name,
            "execution": cfg.execution,
        }
        if cfg.audit_test:
            summary["compliance_test"] = cfg.audit_test
        if accuracy:
            em, f1 = stub_scorer(run_dir / "mlperf_log_accuracy.json")
            (run_dir / "accuracy.txt").write_text(
                f"scored {N_SAMPLES} samples\n{json.dumps({'exact_match': em, 'f1': f1})}\n"
            )
            summary.update(exact_match=em, f1=f1, valid=True)
        else:
            s = read_summary(run_dir / "mlperf_log_summary.txt")
            summary.update(samples_per_second=s.score, valid=s.valid)
        (run_dir / "summary.json").write_text(json.dumps(summary) + "\n")
        (run_dir / "system.json").write_text(
            json.dumps(
                {
                    "name": sut,
                    "devices": 1,
                    "accelerator": "stub",
                    "backend": "stub",
                    "simulated": True,
                    "sdk": cfg.sdk,
                    "host": "stub host",
                    "host_info": {"cpus": 2, "cpu_model": "test cpu", "platform": "Linux-test"},
                }
            )
        )
        (run_dir / "user.conf").write_text(f"bert.{cfg.scenario}.target_qps = 1000\n")
        plan = plan_run(dataclasses.replace(cfg, compliance_tests=()))  # what a real run records
        harness = {k: plan.describe()[k] for k in ("precision", "weights", "sample_count", "round", "target_qps")}
        (run_dir / "settings.json").write_text(json.dumps({"mode": cfg.mode, "harness": harness}) + "\n")
        (run_dir / "command.txt").write_text(shlex.join(to_argv(cfg)) + "\n")
        (run_dir / "report.md").write_text("# stub run\n")
        return rd.finish()
