"""Shared by the emulator's tests: the emulator's server, started as a test module's fixture."""

import contextlib
import subprocess
import sys
from pathlib import Path


@contextlib.contextmanager
def serve(env: dict[str, str] | None = None):
    """The emulator's server (gatekeeper_moto.py) on a free port, with `env` beside PATH: its URL, until the
    block ends."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gatekeeper_moto.py")), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "... listening on http://127.0.0.1:<port>", printed once the socket is bound
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(5)
