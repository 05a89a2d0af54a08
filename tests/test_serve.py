"""``main.py serve``: two CLI clients at once get the same hits as a local run, from the warm
process (127.0.0.1 only); without a server the CLI says it is loading instead of staying silent."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT


def _cli(home, *argv, env):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--home", str(home), *argv],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def kb_home(home, tiny_embedder_dir, tmp_path):
    import pymupdf

    env = {**os.environ, "TQTS_EMBEDDING_MODEL": str(tiny_embedder_dir), "TQTS_EMBEDDING_BACKEND": "torch",
           "OMP_NUM_THREADS": "1"}
    pdf = tmp_path / "notes.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "The warm server answers search requests quickly.\n"
                               "Retrieval augmented generation cites pages.")
    doc.save(pdf)
    r = _cli(home, "ingest", str(pdf), env=env)
    assert r.returncode == 0, r.stderr
    return home, env


def _wait_for(path, proc, deadline_s=300.0):
    """Wait until ``path`` exists (the server wrote it) or the server died."""
    end = time.monotonic() + deadline_s
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_two_clients_at_once_use_the_warm_server(kb_home):
    home, env = kb_home
    local = _cli(home, "search", "--json", "warm server", env=env)
    assert local.returncode == 0 and "loading models in this process" in local.stderr
    server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--home", str(home), "serve", "--no-model"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        state = home / "serve.json"
        _wait_for(state, server)
        info = json.loads(state.read_text())
        assert oct(state.stat().st_mode & 0o777) == "0o600" and info["pid"] == server.pid
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, _cli(home, "search", "--json", "warm server", env=env))) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        for r in results.values():
            assert r.returncode == 0, r.stderr
            assert f"127.0.0.1:{info['port']}" in r.stderr and "loading models" not in r.stderr
            assert json.loads(r.stdout) == json.loads(local.stdout)
        assert json.loads(local.stdout)[0]["source"].endswith("notes.pdf")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert not (home / "serve.json").exists()
    again = _cli(home, "search", "warm server", env=env)  # a stale server is not waited for
    assert again.returncode == 0 and "loading models in this process" in again.stderr


def test_a_wrong_token_is_refused(kb_home):
    import urllib.error
    import urllib.request

    home, env = kb_home
    server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--home", str(home), "serve", "--no-model"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(home / "serve.json", server)
        port = json.loads((home / "serve.json").read_text())["port"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/run", method="POST",
                                     data=json.dumps({"token": "guess", "argv": ["search", "x"]}).encode())
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(req, timeout=60)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
