"""A real ``chroma run`` server for tests (kb/server_store.py): started on a free port of
127.0.0.1 over a folder of the test, ready once its heartbeat answers (polled with a deadline)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMA = shutil.which("chroma")
SKIP_REASON = "the `chroma` CLI (installed with chromadb) is not on PATH, so no Chroma server can be started"
DEADLINE = 120.0     # seconds for a server to answer; it takes about 1.5 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    """``chroma run --path PATH --host 127.0.0.1 --port PORT``; the port stays across restarts."""

    def __init__(self, path: Path, port: int | None = None):
        self.path, self.port = Path(path), port or free_port()
        self.log = self.path.with_name(self.path.name + ".log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChromaServer:
        """Start it and wait for its heartbeat. Raises RuntimeError (with its log) when it exits
        or stays silent past :data:`DEADLINE`."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([CHROMA, "run", "--path", str(self.path), "--host", "127.0.0.1",
                                          "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chroma run did not answer on {self.url}:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as in a crash or power loss."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
