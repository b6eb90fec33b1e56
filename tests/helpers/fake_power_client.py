#!/usr/bin/env python3
"""Stand-in for mlcommons power-dev's ``power_client``: same arguments, same output tree.

Connects to the server address (a plain TCP listener in tests), runs the workload twice
(ranging, then testing) with ``$ranging`` and ``$out`` set, moves the LoadGen logs from
``--loadgen-logs`` into ``OUTDIR/<date>_<label>/{ranging,run_1}/`` and writes ``spl.txt`` there
with synthetic analyzer samples (ranging 250 W, testing 200 W) spanning LoadGen's
power_begin..power_end, plus ``power/{client.json,client.log,ptd_logs.txt,server.json,server.log}``.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

FMT = "%m-%d-%Y %H:%M:%S.%f"


def marks(detail: Path) -> tuple[datetime, datetime]:
    found = {}
    for line in detail.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            rec = json.loads(line[9:])
            if rec["key"] in ("power_begin", "power_end"):
                found[rec["key"]] = datetime.strptime(rec["value"], FMT)
    return found["power_begin"], found["power_end"]


def main() -> int:
    p = argparse.ArgumentParser(description="PTD client (stand-in)")
    p.add_argument("-a", "--addr", required=True)
    p.add_argument("-p", "--port", type=int, default=4950)
    p.add_argument("-w", "--run-workload", required=True)
    p.add_argument("-L", "--loadgen-logs", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-n", "--ntp", required=True)  # required by the real client too
    p.add_argument("-l", "--label", default="")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-S", "--stop-server", action="store_true")
    args = p.parse_args()
    try:
        socket.create_connection((args.addr, args.port), timeout=3).close()
    except OSError as e:
        print(f"Could not connect to the server {args.addr}:{args.port} {e}", file=sys.stderr)
        return 1
    session = Path(args.output) / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{args.label}"
    session.mkdir(parents=True)
    indir = Path(args.loadgen_logs)
    log = [" ".join(sys.argv)]
    for mode, folder, watts in (("ranging", "ranging", 250.0), ("testing", "run_1", 200.0)):
        if args.force and indir.exists():
            shutil.rmtree(indir)
        env = dict(os.environ, ranging="1" if mode == "ranging" else "0", out=str(session / folder))
        status = subprocess.run(args.run_workload, shell=True, env=env).returncode
        log.append(f"{mode}: workload exit {status}")
        if status != 0:
            return status
        if not indir.is_dir() or not any(indir.iterdir()):
            print(f"The directory {indir} is empty", file=sys.stderr)
            return 1
        shutil.copytree(indir, session / folder)
        begin, end = marks(session / folder / "mlperf_log_detail.txt")
        lines, t = [], begin - timedelta(seconds=1)
        while t <= end + timedelta(seconds=1):
            w = watts if begin <= t <= end else 50.0  # idle outside the window
            stamp = t.strftime(FMT)[:-3]
            lines.append(
                f"Time,{stamp},Watts,{w:.6f},Volts,230.000000,Amps,{w / 230:.6f},PF,0.990000,Mark,{session.name}_{mode}"
            )
            t += timedelta(milliseconds=20)
        (session / folder / "spl.txt").write_text("\n".join(lines) + "\n")
    power = session / "power"
    power.mkdir()
    (power / "client.json").write_text(json.dumps({"version": "stand-in", "label": args.label}) + "\n")
    identify = os.environ.get("FAKE_ANALYZER_IDENTITY", "SIMULATED,version=0.0-test-stand-in")
    server = {"version": "stand-in", "ptd_messages": [{"cmd": "Hello", "reply": "Hello, PTDaemon here!"}]}
    server["ptd_messages"].append({"cmd": "Identify", "reply": identify})
    (power / "server.json").write_text(json.dumps(server) + "\n")
    for name in ("client.log", "server.log", "ptd_logs.txt"):
        (power / name).write_text("\n".join(log) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
