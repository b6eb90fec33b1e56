"""The power client stand-in and what it runs."""

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

HELPERS = Path(__file__).parent
FAKE_CLIENT = HELPERS / "fake_power_client.py"

# What the client runs twice: a real LoadGen run (the harness stand-in) into --results-dir; an
# argument after the helpers' path is the run's round.
STUB_PERF = [
    sys.executable,
    "-c",
    "import os, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
    "from helpers.stub_launcher import StubLauncher;"
    "from packed_bert.harness.config import RunConfig;"
    "StubLauncher()(RunConfig(sut='null', results_dir=Path(os.environ['PACKED_BERT_POWER_RESULTS_DIR']),"
    " round=sys.argv[2] if len(sys.argv) > 2 else None))",
    str(HELPERS.parent),
]


def fake_power_server() -> Iterator[str]:
    """A TCP listener standing in for the power server (the fake client only connects)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sock.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    sock.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)
