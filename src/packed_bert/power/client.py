"""Driving the official MLPerf power client (``power_client`` from mlcommons power-dev).

Its arguments (ptd_client_server/client.py): ``-a/--addr``, ``-p/--port`` (default 4950),
``-w/--run-workload CMD``, ``-L/--loadgen-logs INDIR``, ``-o/--output OUTDIR``, ``-n/--ntp``
(required: the client checks the clock against that NTP server before it runs anything; without
``--ntp`` the harness names ``DEFAULT_NTP``, the default of MLCommons' own automation),
``-l/--label``, ``-f/--force`` (remove INDIR before each run). It runs CMD twice, ranging then
testing, and leaves ``OUTDIR/<date>_<label>/{power,ranging,run_1}/`` with ``spl.txt`` beside the
LoadGen logs of each run.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packed_bert.errors import UserError

ENV_CLIENT = "PACKED_BERT_POWER_CLIENT"
DEFAULT_NTP = "time.google.com"  # MLCommons' CM power scripts' default (CM_MLPERF_POWER_NTP_SERVER)


def find_client() -> Path:
    given = os.environ.get(ENV_CLIENT)
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{ENV_CLIENT}={given}: not an executable file")
        return path
    found = shutil.which("power_client")
    if not found:
        raise UserError(
            "power_client not found: install the MLPerf power client "
            "(pip install git+https://github.com/mlcommons/power-dev) or set PACKED_BERT_POWER_CLIENT"
        )
    return Path(found)


@dataclass(frozen=True)
class ClientCall:
    client: Path
    host: str
    port: int
    workload: str  # a shell command
    loadgen_logs: Path
    output: Path
    label: str
    ntp: str = DEFAULT_NTP

    def argv(self) -> list[str]:
        args = [
            str(self.client),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--run-workload",
            self.workload,
            "--loadgen-logs",
            str(self.loadgen_logs),
            "--output",
            str(self.output),
            "--label",
            self.label,
            "--force",
            "--ntp",
            self.ntp,
        ]
        return args


def run_client(call: ClientCall) -> Path:
    """Run the client; return its session directory (``OUTDIR/<date>_<label>``)."""
    result = subprocess.run(call.argv(), check=False)
    if result.returncode != 0:
        raise UserError(f"power_client exited with status {result.returncode}; see its log above")
    sessions = sorted(p for p in call.output.iterdir() if p.is_dir() and (p / "run_1").is_dir())
    if not sessions:
        raise UserError(f"power_client left no run_1 directory under {call.output}")
    return sessions[-1]
