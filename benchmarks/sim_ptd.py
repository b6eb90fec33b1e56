#!/usr/bin/env python3
"""A SIMULATED stand-in for SPEC PTDaemon, for ``power_dev_check.py``: no power analyzer.

power-dev's server starts PTDaemon as ``ptd -l LOGFILE -p PORT [flags] DEVICE_TYPE DEVICE_PORT``
and talks to it over TCP, one command a line. This program answers the commands the server
sends (Hello, Identify, RR, SR, Go, Stop, RL, Watts, Uncertainty) and, while a measurement runs,
makes up one sample a second: 60 W plus 90 W times the share of this machine's CPU time that was
busy over that second. The samples go to LOGFILE (with the measurement's mark) and to the next
RL reply, as PTDaemon's do. It identifies itself as simulated, so power-dev's own check refuses
its analyzer, as it should.
"""

from __future__ import annotations

import datetime
import socket
import sys
import threading
import time

IDENTITY = "SIMULATED,version=0.0-packed-bert-stand-in,no power analyzer"
GO_REPLY = "Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"


def stamp() -> str:
    """PTDaemon's time format (the server runs it with TZ=UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%m-%d-%Y %H:%M:%S.%f")[:-3]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class Analyzer:
    """The measurement state: running or not, its mark, the samples RL has not returned yet."""

    def __init__(self, logfile: str) -> None:
        self.logfile = logfile
        self.lock = threading.Lock()
        self.measuring = False
        self.mark = ""
        self.unread: list[str] = []
        self.last = "Watts,0.0"

    def sample_forever(self) -> None:
        busy0, total0 = cpu_ticks()
        with open(self.logfile, "a") as log:
            while True:
                time.sleep(1.0)
                busy1, total1 = cpu_ticks()
                share = (busy1 - busy0) / max(1, total1 - total0)
                busy0, total0 = busy1, total1
                watts = 60.0 + 90.0 * share
                row = f"Time,{stamp()},Watts,{watts:.4f},Volts,230.0000,Amps,{watts / 230.0 / 0.95:.5f},PF,0.9500"
                with self.lock:
                    if self.measuring:
                        log.write(f"{row},Mark,{self.mark}\n")
                        log.flush()
                        self.unread.append(row)
                        self.last = f"Watts,{watts:.4f}"

    def reply(self, cmd: str) -> list[str]:
        with self.lock:
            if cmd == "Hello":
                return ["Hello, PTDaemon here!"]
            if cmd == "Identify":
                return [IDENTITY]
            if cmd == "RR":  # amps: autorange off, 20 A; volts: autorange off, 300 V
                return ["Ranges,0,20.000000,0,300.000000"]
            if cmd.startswith(("SR,V", "SR,A")):
                return [f"Range {cmd[3]} changed"]
            if cmd.startswith("Go,"):
                self.measuring, self.mark = True, cmd.split(",", 3)[3]
                print(f"{stamp()}: Go with mark {self.mark!r}", flush=True)
                return [GO_REPLY]
            if cmd == "Stop":
                if not self.measuring:
                    return ["Error: no measurement to stop"]
                self.measuring = False
                print(f"{stamp()}: Completed test", flush=True)
                return ["Stopping untimed measurement"]
            if cmd in ("RL,*,*", "RL"):
                rows, self.unread = self.unread, []
                return [f"Last {len(rows)} samples", *rows]
            if cmd == "Watts":
                return [self.last]
            if cmd == "Uncertainty":
                return ["Uncertainty,SIMULATED,0"]
            return ["Unknown command"]


def serve(analyzer: Analyzer, port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(4)
    while True:
        conn, _ = server.accept()
        pending = b""
        while data := conn.recv(4096):
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                for out in analyzer.reply(line.decode().rstrip("\r")):
                    conn.sendall(out.encode() + b"\r\n")
        conn.close()


def main(argv: list[str]) -> int:
    analyzer = Analyzer(argv[argv.index("-l") + 1])
    print("SIMULATED PTDaemon stand-in (no power analyzer)", flush=True)
    threading.Thread(target=analyzer.sample_forever, daemon=True).start()
    serve(analyzer, int(argv[argv.index("-p") + 1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
