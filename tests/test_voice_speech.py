"""Speech to text: WAV input checks, model discovery, vosk streaming, faster-whisper, mic capture."""
from __future__ import annotations

import http.server
import sys
import threading
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.voice import speech
from models.voice.mic import MicCapture, WavInputStream
from models.voice.speech import SpeechError


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> Path:
    """samples: (n,) or (n, channels) int array already in the width's range."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(width)
        wf.setframerate(rate)
        wf.writeframes(samples.astype({1: "u1", 2: "<i2"}[width]).tobytes())
    return path


def tone(rate: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (10000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


@pytest.fixture
def settings(home):
    """Plain settings on the temp data dir (no embedder needed here)."""
    import settings as settings_mod

    return settings_mod.load()


# -- WAV input ---------------------------------------------------------------------------------
def test_read_wav_resamples_and_downmixes(tmp_path):
    stereo = np.stack([tone(22050), tone(22050)], axis=1)       # (n, 2)
    path = write_wav(tmp_path / "stereo.wav", stereo, 22050)
    pcm = np.frombuffer(speech.read_wav(path), dtype="<i2")
    assert abs(len(pcm) - 8000) <= 1                              # 0.5 s at 16 kHz
    assert 9000 < np.abs(pcm).max() <= 10500                      # amplitude kept by the filter


@pytest.mark.parametrize("kind,needle", [
    ("text", "not a WAV file"), ("8bit", "8-bit"), ("float", "float or compressed"), ("missing", "no such file"),
])
def test_read_wav_rejects_with_clear_message(tmp_path, kind, needle):
    path = tmp_path / f"{kind}.wav"
    if kind == "text":
        path.write_text("not audio")
    elif kind == "8bit":
        write_wav(path, (tone(8000) // 256 + 128), 8000, width=1)
    elif kind == "float":
        from scipy.io import wavfile

        wavfile.write(path, 16000, (tone(16000) / 32768).astype(np.float32))
    with pytest.raises(SpeechError) as e:
        speech.read_wav(path)
    assert needle in str(e.value) and str(path) in str(e.value)


def test_no_model_message_names_the_folder(settings):
    msg = speech.model_status(settings)
    assert msg and str(settings.models_dir / "vosk") in msg and "voice pull" in msg
    settings.set("stt_engine", "whisper", persist=False)
    assert "stt_model" in speech.model_status(settings)
    settings.set("stt_engine", "deepspeech", persist=False)
    with pytest.raises(SpeechError, match="vosk or whisper"):
        speech.transcribe_file(__file__, settings)


def test_vosk_folder_is_discovered_by_language(settings):
    base = settings.models_dir / "vosk"
    (base / "vosk-model-small-en-us-0.15").mkdir(parents=True)
    (base / "vosk-model-small-cn-0.22").mkdir()
    assert speech.find_model_dir(settings).name == "vosk-model-small-cn-0.22"   # ui_language zh
    settings.set("ui_language", "en", persist=False)
    assert speech.find_model_dir(settings).name == "vosk-model-small-en-us-0.15"


def test_whisper_absent_is_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(SpeechError, match="pip install faster-whisper"):
        speech.WhisperRecognizer(tmp_path)


def test_join_words_keeps_chinese_together():
    assert speech.join_words(["今天", "天气", "good", "", "day"]) == "今天天气 good day"


# -- engines -----------------------------------------------------------------------------------
def test_whisper_transcribes_spoken_question(settings, whisper_dir, spoken_question):
    settings.update({"stt_engine": "whisper", "stt_model": str(whisper_dir)})
    text = speech.transcribe_file(spoken_question, settings).lower()
    assert "capital" in text and "france" in text


def test_vosk_streams_partial_and_final_results(vosk_ko_dir, spoken_question):
    rec = speech.VoskRecognizer(vosk_ko_dir)
    pcm = speech.read_wav(spoken_question)
    results = [rec.accept(pcm[i:i + 4000]) for i in range(0, len(pcm), 4000)]
    final = rec.final()
    assert results and all(not r.final for r in results)
    assert all("partial" in r.raw or "text" in r.raw for r in results)
    assert any(r.text for r in results)          # something was heard while streaming
    assert final.final and "text" in final.raw and isinstance(final.text, str)


def test_mic_capture_with_wav_stream_standin(settings, vosk_ko_dir, spoken_question):
    settings.set("stt_model", str(vosk_ko_dir), persist=False)
    results, errors, streams = [], [], []

    def factory(**kw):   # same keywords sounddevice.RawInputStream receives
        assert kw["samplerate"] == 16000 and kw["dtype"] == "int16" and kw["channels"] == 1
        streams.append(WavInputStream(spoken_question, **kw))
        return streams[0]

    cap = MicCapture(lambda: speech.make_recognizer(settings), results.append, errors.append,
                     stream_factory=factory, blocksize=4000)
    cap.start()
    assert streams[0].finished.wait(60)
    cap.stop(wait=True)
    cap.stop()   # a second stop is harmless
    assert not errors
    assert len(results) >= 3 and results[-1].final and not any(r.final for r in results[:-1])
    assert any(r.text for r in results)


def test_mic_capture_resamples_a_device_at_its_own_rate(vosk_ko_dir, spoken_question):
    """A device that only runs at 48 kHz: the capture converts to the recognizer's 16 kHz."""
    fed = []

    class Counting(speech.VoskRecognizer):
        def accept(self, pcm16, *, last=False):
            fed.append(len(pcm16))
            return super().accept(pcm16, last=last)

    streams = []

    def factory(**kw):
        streams.append(WavInputStream(spoken_question, **{**kw, "samplerate": 48000}))
        return streams[0]

    results, errors = [], []
    cap = MicCapture(lambda: Counting(vosk_ko_dir), results.append, errors.append, stream_factory=factory)
    cap.start()
    assert streams[0].finished.wait(60)
    cap.stop(wait=True)
    expected = len(speech.read_wav(spoken_question)) + 2 * 8000   # + 0.5 s of tail silence
    assert not errors and results[-1].final and abs(sum(fed) - expected) <= 2 * len(fed) * 2


def test_mic_capture_reports_model_errors(settings, spoken_question):
    errors = []
    cap = MicCapture(lambda: speech.make_recognizer(settings), lambda r: None, errors.append,
                     stream_factory=lambda **kw: WavInputStream(spoken_question, **kw))
    cap.start()
    cap.stop(wait=True)
    assert len(errors) == 1 and "voice pull" in errors[0]


# -- voice pull --------------------------------------------------------------------------------
def test_voice_pull_downloads_and_unzips(tmp_path):
    from models.voice.cli import pull_vosk_model

    served = tmp_path / "site"
    served.mkdir()
    with zipfile.ZipFile(served / "vosk-model-small-en-us-0.15.zip", "w") as zf:
        zf.writestr("vosk-model-small-en-us-0.15/conf/model.conf", "--sample-frequency=16000\n")
        zf.writestr("vosk-model-small-en-us-0.15/am/final.mdl", "x")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        dest = tmp_path / "models" / "vosk"
        folder = pull_vosk_model("en", dest, base_url=url)
        assert (folder / "conf" / "model.conf").is_file() and folder.parent == dest
        with pytest.raises(SpeechError, match="could not fetch"):
            pull_vosk_model("zh", dest, base_url=url)        # 404
        assert sorted(p.name for p in dest.iterdir()) == ["vosk-model-small-en-us-0.15"]
    finally:
        server.shutdown()


def test_voice_pull_cli_offline_message(home, capsys, monkeypatch):
    import main
    import models.voice.cli as vc

    orig = vc.pull_vosk_model
    monkeypatch.setattr(vc, "pull_vosk_model",   # a closed local port stands in for no network
                        lambda lang, dest: orig(lang, dest, base_url="http://127.0.0.1:9", timeout=5))
    rc = main.main(["voice", "pull", "zh"])
    err = capsys.readouterr().err
    assert rc == 1 and "could not fetch" in err and str(home / "models" / "vosk") in err
