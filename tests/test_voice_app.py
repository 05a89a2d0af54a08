"""VoiceControls under Xvfb: a WAV stands in for the microphone; degraded states; speak switch."""
from __future__ import annotations

import gc
import time

import pytest

from models.voice import mic

pytestmark = pytest.mark.gui


@pytest.fixture
def settings(home):
    import settings as settings_mod

    return settings_mod.load()


@pytest.fixture
def root(display):
    import tkinter as tk

    r = tk.Tk()
    yield r
    r.destroy()
    gc.collect()   # collect Tk variables here, not later on some worker thread


def pump(root, until, limit_s=90.0):
    """Run the Tk loop until ``until()`` is true (bounded so a broken path fails, not hangs)."""
    end = time.monotonic() + limit_s
    while not until() and time.monotonic() < end:
        root.update()
        time.sleep(0.01)
    return until()


def make_controls(root, settings, wav, **kw):
    from app.voice import VoiceControls

    asked, sent, streams = [], [], []

    def factory(**stream_kw):      # what sounddevice.RawInputStream would be given
        streams.append(mic.WavInputStream(wav, **stream_kw))
        return streams[-1]

    vc = VoiceControls(root, settings, asked.append, lambda: sent.append(True),
                       stream_factory=factory, **kw)
    vc.pack()
    root.update()
    return vc, asked, sent, streams


def test_hotkey_streams_partials_then_fills_question(root, settings, vosk_ko_dir, spoken_question):
    settings.set("stt_model", str(vosk_ko_dir), persist=False)
    vc, asked, sent, streams = make_controls(root, settings, spoken_question)
    shown = []
    vc.status_var.trace_add("write", lambda *a: shown.append(vc.status_var.get()))
    assert vc.unavailable is None and "disabled" not in vc.talk_button.state()

    press_f9 = lambda: (vc.talk_button.focus_force(), root.update(),  # noqa: E731
                        vc.talk_button.event_generate("<F9>"))
    press_f9()                                        # start (hotkey bound on the toplevel)
    assert vc.listening and streams
    assert pump(root, lambda: streams[0].finished.is_set() and vc._events.empty())
    press_f9()                                        # stop: the final result fills the question
    assert pump(root, lambda: bool(asked))
    partials = [s for s in shown if s and s not in (vc.tr("voice.loading"), vc.tr("voice.listening"))]
    assert partials, "no live partial text was shown"
    assert isinstance(asked[0], str) and asked[0].strip() and not sent   # auto-send is off
    assert not vc.listening and vc.talk_button.cget("text") == vc.tr("voice.talk")
    vc.shutdown()
    vc.shutdown()


def test_whisper_question_is_auto_sent(root, settings, whisper_dir, spoken_question):
    settings.update({"stt_engine": "whisper", "stt_model": str(whisper_dir), "stt_auto_send": True})
    vc, asked, sent, streams = make_controls(root, settings, spoken_question)
    vc.talk_button.invoke()
    assert pump(root, lambda: streams[0].finished.is_set())
    vc.talk_button.invoke()
    assert pump(root, lambda: bool(sent))
    assert "capital" in asked[0].lower() and "france" in asked[0].lower()
    vc.shutdown()


def test_without_model_talk_is_disabled_with_reason(root, settings, spoken_question):
    vc, asked, _, streams = make_controls(root, settings, spoken_question)
    assert "disabled" in vc.talk_button.state()
    assert vc.status_var.get() == vc.tr("voice.no_model")            # zh by default
    assert str(settings.models_dir / "vosk") in vc.tooltip.text
    vc.talk_button.focus_force()
    root.update()
    vc.talk_button.event_generate("<F9>")
    root.update()
    assert not vc.listening and not streams and not asked
    vc.shutdown()


def test_without_microphone_talk_is_disabled(root, settings, vosk_ko_dir, monkeypatch):
    from app.voice import VoiceControls

    settings.update({"stt_model": str(vosk_ko_dir), "ui_language": "en"})
    monkeypatch.setattr(mic, "input_status", lambda: "no microphone found (test)")
    vc = VoiceControls(root, settings, lambda t: None, lambda: None)   # the real stream factory
    assert "disabled" in vc.talk_button.state()
    assert vc.status_var.get() == "Voice input off: no microphone"
    assert vc.tooltip.text == "no microphone found (test)"
    vc.shutdown()


def test_speak_switch_is_saved_and_errors_reach_the_label(root, settings, spoken_question):
    import settings as settings_mod

    vc, *_ = make_controls(root, settings, spoken_question)
    assert vc.speak_answer("Paris [1].") is None                      # switch off: nothing queued
    vc.speak_check.invoke()
    assert settings_mod.load().tts_enabled is True                    # persisted
    job = vc.speak_answer("<think>reasoning</think><answer>Paris [1].</answer>")
    assert job is not None
    job.result(timeout=60)
    try:
        import sounddevice as sd

        sd.query_devices(kind="output")
        has_output = True
    except Exception:
        has_output = False
    if not has_output:          # no audio device here: one clear message, shown on the Tk thread
        assert pump(root, lambda: "audio output" in vc.status_var.get(), 10)
    vc.speak_check.invoke()
    assert settings_mod.load().tts_enabled is False
    vc.shutdown()


def test_mounted_in_the_app_fills_the_question_box_and_speaks_answers(settings, display, whisper_dir,
                                                                       spoken_question, monkeypatch):
    """The app's own wiring: the talk button is mounted beside the question box, its result
    lands in that box, and App.on_answer reaches speak_answer (errors shown in the label)."""
    from app.main import App
    from app.services import Services
    from tests.fakes import AnswerResult, FakeAnswers, FakeKB, FakeRegistry

    settings.update({"stt_engine": "whisper", "stt_model": str(whisper_dir), "tts_enabled": True})
    monkeypatch.setattr(mic, "input_status", lambda: None)               # "a microphone is present"
    streams = []
    monkeypatch.setattr(mic, "default_stream_factory",                     # ...and it says the WAV
                        lambda **kw: streams.append(mic.WavInputStream(spoken_question, **kw)) or streams[-1])
    kb = FakeKB(settings)
    app = App(settings, Services(settings, kb, FakeAnswers(kb, delay=0.001), FakeRegistry(True)))
    try:
        vc = app.voice
        assert vc is not None and vc.unavailable is None
        vc.talk_button.invoke()
        assert pump(app.root, lambda: streams and streams[0].finished.is_set(), 30)
        vc.talk_button.invoke()
        box = lambda: app.chat.input.get("1.0", "end").strip().lower()  # noqa: E731
        assert pump(app.root, lambda: "capital" in box())
        assert "france" in box()
        app.on_answer(AnswerResult("q", "<think>x</think>Paris [1].", "", [], False, "fake"))
        try:
            import sounddevice as sd

            sd.query_devices(kind="output")
        except Exception:   # no output device here: the failure is reported in the voice label
            assert pump(app.root, lambda: "audio output" in vc.status_var.get(), 30)
    finally:
        app.close(timeout=60)
        gc.collect()
