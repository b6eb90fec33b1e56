"""A power run through MLCommons power-dev's own client and server, then power-dev's own check.

    .venv/bin/python benchmarks/power_dev_check.py --power-dev PATH [--sut null] [--run-args "..."]

PATH is a checkout of github.com/mlcommons/power-dev (its ``ptd_client_server`` and
``compliance/check.py``; never copied into this project). SPEC PTDaemon is a licensed binary that
drives a real analyzer, so the server runs ``sim_ptd.py`` in its place: a SIMULATED analyzer whose
made-up watts follow this machine's CPU load. The client and the server sync to an NTP server
(``--ntp``); without one, this script answers NTP itself on 127.0.0.1:123 with this machine's clock
(needs root). Then ``packed-bert run --mode power`` drives the client as a user's run would, and
``compliance/check.py`` checks the run directory. The checks about the analyzer fail by design
(its identity and log say simulated); the others are about what the harness hands the client.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_main  # noqa: E402

from packed_bert.errors import UserError  # noqa: E402

HERE = Path(__file__).resolve().parent
NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer_ntp(sock: socket.socket) -> None:
    """Reply to every NTP request with this machine's clock (stratum 1, reference LOCL)."""

    def ntp_time(t: float) -> bytes:
        return struct.pack("!II", int(t) + NTP_EPOCH, int((t % 1) * 2**32))

    while True:
        request, peer = sock.recvfrom(512)
        received = time.time()
        head = struct.pack("!BBbb", (4 << 3) | 4, 1, 0, -20) + struct.pack("!II", 0, 0) + b"LOCL"
        sock.sendto(head + ntp_time(received) + request[40:48] + ntp_time(received) + ntp_time(time.time()), peer)


def local_ntp() -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 123))
    except OSError as exc:
        raise UserError(f"cannot answer NTP on 127.0.0.1:123 ({exc}); run as root or pass --ntp HOST") from exc
    threading.Thread(target=answer_ntp, args=(sock,), daemon=True).start()
    return "127.0.0.1"


def start_server(power_dev: Path, work: Path, ntp: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "server.conf"
    conf.write_text(
        f"[server]\nntpServer: {ntp}\nlisten: 127.0.0.1 {port}\n\n"
        f"[ptd]\nptd: {HERE / 'sim_ptd.py'}\nanalyzerCount: 1\n\n"
        f"[analyzer1]\nnetworkPort: {free_port()}\ndeviceType: 49\ninterfaceFlag:\ndevicePort: SIMULATED\n"
    )
    log = work / "server.out"
    env = dict(os.environ, PYTHONPATH=str(power_dev))
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(power_dev / "ptd_client_server" / "server.py"), "-c", str(conf)],
            cwd=power_dev,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    for _ in range(300):
        if "Ready to accept connections" in log.read_text(errors="replace"):
            return server, port
        if server.poll() is not None:
            break
        time.sleep(0.1)
    server.kill()
    raise UserError(f"power-dev's server did not start; its last line: {log.read_text().strip().splitlines()[-1:]}")


def client_wrapper(power_dev: Path, work: Path) -> Path:
    wrapper = work / "power_client"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(power_dev))} exec {shlex.quote(sys.executable)} "
        f'{shlex.quote(str(power_dev / "bin" / "power_client"))} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def verdicts(check_output: str) -> list[tuple[str, bool, str]]:
    """(check, passed, why not) from compliance/check.py's log lines."""
    rows: list[tuple[str, bool, str]] = []
    for line in check_output.splitlines():
        m = re.search(r"\[([x ])\] (.+)$", line)
        if m:
            rows.append((m.group(2).strip(), m.group(1) == "x", ""))
        elif rows and not rows[-1][1] and not rows[-1][2] and line.split(":", 2)[-1].strip():
            rows[-1] = (rows[-1][0], False, line.split(":", 2)[-1].strip())
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--power-dev", type=Path, required=True, help="a checkout of mlcommons/power-dev")
    ap.add_argument("--sut", default="null")
    ap.add_argument("--run-args", default="", help="more `packed-bert run` flags, e.g. '--weights tiny'")
    ap.add_argument("--ntp", help="an NTP server (default: answered here on 127.0.0.1:123)")
    ap.add_argument("--results-dir", type=Path, help="default: a new temporary folder")
    args = ap.parse_args()
    power_dev = args.power_dev.resolve()
    for part in ("ptd_client_server/server.py", "bin/power_client", "compliance/check.py"):
        if not (power_dev / part).is_file():
            raise UserError(f"--power-dev {power_dev}: no {part}; pass a checkout of github.com/mlcommons/power-dev")
    work = Path(tempfile.mkdtemp(prefix="power-dev-check-"))
    results = args.results_dir or work / "results"
    ntp = args.ntp or local_ntp()
    server, port = start_server(power_dev, work, ntp)
    try:
        env = dict(os.environ, PACKED_BERT_POWER_CLIENT=str(client_wrapper(power_dev, work)))
        run = [sys.executable, "-m", "packed_bert.cli", "run", "--sut", args.sut, "--mode", "power"]
        run += ["--power-server", f"127.0.0.1:{port}", "--ntp", ntp, "--results-dir", str(results)]
        run += shlex.split(args.run_args)
        print("$", shlex.join(run), flush=True)
        status = subprocess.run(run, env=env, check=False).returncode
    finally:
        server.terminate()
        server.wait(timeout=30)
    runs = sorted(results.glob("*-power"))
    if not runs:
        raise UserError(f"the power run failed (exit {status}); power-dev's server log: {work / 'server.out'}")
    if status != 0:  # a finished power run whose testing run was INVALID: its logs are still checked
        print(f"the power run exited {status}: its testing run was not VALID", flush=True)
    check = subprocess.run(
        [sys.executable, str(power_dev / "compliance" / "check.py"), str(runs[-1])],
        env=dict(os.environ, PYTHONPATH=str(power_dev)),
        capture_output=True,
        text=True,
        check=False,
    )
    rev = subprocess.run(
        ["git", "-C", str(power_dev), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    print(f"\npower-dev {rev.stdout.strip() or '(not a git checkout)'}: compliance/check.py {runs[-1]}")
    print("| check | verdict | why not |\n| --- | --- | --- |")
    for name, passed, why in verdicts(check.stdout + check.stderr):
        print(f"| {name} | {'pass' if passed else 'FAIL'} | {why} |")
    print("\nThe watts above are SIMULATED (sim_ptd.py: no power analyzer); only the checks' verdicts are figures.")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
