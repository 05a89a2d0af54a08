"""The voice path of the CLI: ``ask --voice-in q.wav --speak-to a.wav --json`` end to end
(espeak-ng question -> faster-whisper -> KB + tiny Qwen -> pyttsx3 WAV)."""
from __future__ import annotations

import json
import shutil
import subprocess
import wave

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not shutil.which("espeak-ng"),
                                reason="espeak-ng not installed (apt-get install espeak-ng)")


def make_pdf(path, text):
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 520, 700), text, fontsize=12)
    doc.save(path)
    return path


def test_ask_voice_in_speak_to(settings, monkeypatch, tmp_path, tiny_qwen_dir, whisper_dir, capsys):
    import main
    from kb.service import KnowledgeBaseService

    pdf = make_pdf(tmp_path / "france.pdf", "Travel notes. The capital of France is Paris, on the Seine.")
    [res] = KnowledgeBaseService(settings).ingest([pdf])
    assert res.status in ("added", "updated"), res
    question = tmp_path / "q.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(question),
                    "What is the capital of France?"], check=True)
    monkeypatch.setenv("TQTS_STT_ENGINE", "whisper")
    monkeypatch.setenv("TQTS_STT_MODEL", str(whisper_dir))
    monkeypatch.setenv("TQTS_RELEVANCE_FLOOR", "-1")     # the tiny embedder's similarities are noise
    monkeypatch.setenv("TQTS_MAX_NEW_TOKENS", "24")
    monkeypatch.setenv("TQTS_THINK", "0")
    answer_wav = tmp_path / "out" / "a.wav"

    rc = main.main(["ask", "--model", str(tiny_qwen_dir), "--voice-in", str(question),
                    "--speak-to", str(answer_wav), "--json"])
    raw = capsys.readouterr().out
    out = json.loads(raw)          # stdout is the one JSON object, nothing else
    assert rc == 0, out
    assert "capital" in out["question"].lower() and "france" in out["question"].lower()
    assert not out["refused"] and out["sources"]
    from models.voice.tts import speakable_text

    if not speakable_text(out["answer"]):
        pytest.skip("the tiny model's gibberish had nothing speakable this time")
    with wave.open(str(answer_wav), "rb") as wf:
        x = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float64)
    assert len(x) > 0 and np.sqrt(np.mean(x ** 2)) > 300


def test_ask_voice_in_rejects_a_bad_wav(home, tmp_path, capsys, monkeypatch):
    import main

    monkeypatch.setenv("TQTS_STT_MODEL", str(tmp_path))   # a folder: the WAV check comes next
    bad = tmp_path / "q.wav"
    bad.write_text("not audio")
    rc = main.main(["ask", "--voice-in", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and "not a WAV file" in err and "sox" in err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("ask: loading models")]  # stage line
    assert len(lines) == 1                                              # one clear message


def test_ask_voice_in_without_model_says_what_to_do(home, tmp_path, capsys):
    import main

    rc = main.main(["ask", "--voice-in", str(tmp_path / "q.wav")])
    err = capsys.readouterr().err
    assert rc == 1 and "voice pull" in err and str(home / "models" / "vosk") in err
