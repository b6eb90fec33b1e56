"""The command the power client runs (twice): sleep, one performance run, its LoadGen logs into
the fixed folder the client collects (``--loadgen-logs``).
The command must write its run directory under ``--results-dir`` (also given to it as
``$PACKED_BERT_POWER_RESULTS_DIR``).

``python -m packed_bert.power.workload --logs DIR --sleep S -- packed-bert run ... --results-dir R``
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json", "mlperf_log_trace.json")


def newest_run(results_dir: Path) -> Path | None:
    runs = (
        sorted(p for p in results_dir.iterdir() if (p / "mlperf_log_summary.txt").is_file())
        if results_dir.is_dir()
        else []
    )
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packed_bert.power.workload")
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.sleep > 0:
        time.sleep(args.sleep)
    before = newest_run(args.results_dir)
    env = dict(os.environ, PACKED_BERT_POWER_RESULTS_DIR=str(args.results_dir))
    status = subprocess.run(command, check=False, env=env).returncode
    run = newest_run(args.results_dir)
    if status != 0 or run is None or run == before:
        print(f"workload: the performance run failed (status {status})", file=sys.stderr)
        return status or 1
    args.logs.mkdir(parents=True, exist_ok=True)
    for name in LOG_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, args.logs / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
