"""Text to speech: what is spoken, voice choice, non-silent WAVs from pyttsx3 and espeak-ng."""
from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from models.voice import tts
from models.voice.tts import Speaker, TTSError, detect_lang, speakable_text

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"),
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture
def settings(home):
    import settings as settings_mod

    return settings_mod.load()


def wav_stats(path: Path) -> tuple[float, float]:
    """(duration in s, RMS of int16 samples)."""
    with wave.open(str(path), "rb") as wf:
        assert wf.getsampwidth() == 2 and wf.getnchannels() == 1
        x = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float64)
        return len(x) / wf.getframerate(), float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


# -- text --------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,spoken", [
    ("<think>long reasoning</think><answer>巴黎[1]。</answer>", "巴黎。"),
    ("<think>still thinking, no answer yet", ""),
    ("reasoning the prompt opened</think>\nThe answer is 42 [2, 3].", "The answer is 42."),
    ("<answer>**Paris** is the capital【1】", "Paris is the capital"),
    ("See [1-2] and [4]: `x` # done", "See and: x done"),
    ("", ""),
])
def test_speakable_text(raw, spoken):
    assert speakable_text(raw) == spoken


def test_speakable_text_keeps_ordinary_brackets():
    assert speakable_text("Use the list [a, b] here") == "Use the list [a, b] here"


@pytest.mark.parametrize("text,lang", [
    ("北京是中国的首都。", "zh"), ("Paris is the capital of France.", "en"),
    ("答案是 42，见 PDF 第 3 页", "zh"), ("The word 首都 means capital city", "en"), ("12345", "en"),
])
def test_detect_lang(text, lang):
    assert detect_lang(text) == lang


# -- pyttsx3 / espeak-ng -----------------------------------------------------------------------
@needs_espeak
def test_voice_follows_language():
    worker = tts._worker()
    if worker.submit(lambda e: e).result() is None:
        pytest.skip(f"pyttsx3 unavailable: {worker.init_error}")
    zh, en = worker.submit(lambda e: (tts.pick_voice(e, "zh"), tts.pick_voice(e, "en"))).result()
    assert zh.endswith("cmn") and en.endswith("en-us")


@needs_espeak
@pytest.mark.parametrize("text", ["巴黎是法国的首都，也是最大的城市。[1]", "Paris is the capital of France [1]."])
def test_save_writes_audible_speech(settings, tmp_path, text):
    out = Speaker(settings).save(text, tmp_path / "sub" / "answer.wav")
    seconds, rms = wav_stats(out)
    assert seconds > 0.8 and rms > 300          # silence is 0; espeak speech is ~2000+


@needs_espeak
def test_reasoning_is_not_spoken(settings, tmp_path):
    reasoning = ("First I look at the passages one by one, then I compare the dates they give, "
                 "then I check which document is newer and whether the page numbers agree. ") * 2
    sp = Speaker(settings)
    answer_only = sp.save(f"<think>{reasoning}</think><answer>短答案</answer>", tmp_path / "a.wav")
    with_reasoning = sp.save(f"{reasoning} 短答案", tmp_path / "b.wav")
    (short, rms), (long, _) = wav_stats(answer_only), wav_stats(with_reasoning)
    assert rms > 300 and short * 5 < long


@needs_espeak
def test_espeak_program_fallback(tmp_path):
    out = tts.espeak_cli_save("-v 不是选项 --help", tmp_path / "cli.wav", "zh", 160)  # text on stdin, not argv
    seconds, rms = wav_stats(out)
    assert seconds > 0.5 and rms > 300


def test_save_with_nothing_to_say(settings, tmp_path):
    with pytest.raises(TTSError, match="no speakable text"):
        Speaker(settings).save("<think>only reasoning</think>", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


@needs_espeak
def test_speak_without_output_device_reports_one_error(settings):
    sd = pytest.importorskip("sounddevice")

    try:
        sd.query_devices(kind="output")
        pytest.skip("this machine has an audio output device; speaking would be audible")
    except Exception:
        pass
    errors = []
    sp = Speaker(settings, on_error=errors.append)
    assert sp.speak("<think>x</think>") is None               # nothing speakable: nothing queued
    sp.speak("Hello there [1].").result(timeout=60)
    assert len(errors) == 1 and "audio output" in errors[0]


def test_stop_drops_queued_speech(settings):
    errors = []
    sp = Speaker(settings, on_error=errors.append)
    blocker = tts._worker().submit(lambda e: __import__("time").sleep(0.3))
    queued = sp.speak("This should never be spoken.")
    sp.stop()
    blocker.result()
    queued.result(timeout=30)
    assert errors == []                   # the job was skipped: no synthesis, no playback error


def test_docstring_examples():
    import doctest

    from models.voice import speech

    for module in (tts, speech):
        failed, attempted = doctest.testmod(module)
        assert attempted and not failed, module.__name__
