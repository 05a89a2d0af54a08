"""Voice controls next to the question box: talk (push-to-talk, toggle) and hear answers.

Talk is a toggle, not press-and-hold: click the microphone button or press F9 to start
listening, again to stop (a held key auto-repeats on most systems, so holding is unreliable
from the keyboard). Partial results show live under the button; when you stop, the final text
replaces the question, and is sent at once when ``stt_auto_send`` is on.

Threads: the microphone callback only enqueues audio; recognition runs on the capture worker
(:class:`models.voice.mic.MicCapture`); speech output on the TTS engine thread
(:class:`models.voice.tts.Speaker`). Their results go on ``self._events``; the Tk thread drains it
with ``after()``, so no widget is touched off the Tk thread.

Without a speech model or a microphone the talk button is disabled and a short label (with
the full reason in a tooltip) says what to do; the "speak answers" switch still works.
"""
from __future__ import annotations

import logging
import queue
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from kb.types import reason
from models.voice import mic, speech
from models.voice.tts import Speaker

log = logging.getLogger(__name__)

#: Built-in strings; assets/strings_<lang>.json keys with the same name win when present.
STRINGS = {
    "zh": {"voice.talk": "说话 (F9)", "voice.stop_talk": "■ 结束 (F9)",
           "voice.listening": "正在听…", "voice.loading": "正在加载语音模型…",
           "voice.speak_answers": "朗读回答", "voice.stop_speaking": "停止朗读",
           "voice.no_model": "语音输入不可用：没有语音模型", "voice.no_mic": "语音输入不可用：没有麦克风",
           "voice.heard_nothing": "没有听清，请再说一次"},
    "en": {"voice.talk": "Talk (F9)", "voice.stop_talk": "■ Stop (F9)",
           "voice.listening": "Listening…", "voice.loading": "Loading the speech model…",
           "voice.speak_answers": "Speak answers", "voice.stop_speaking": "Stop speaking",
           "voice.no_model": "Voice input off: no speech model", "voice.no_mic": "Voice input off: no microphone",
           "voice.heard_nothing": "Nothing heard; please try again"},
}


def _strings(lang: str) -> Callable[[str], str]:
    local = STRINGS.get(lang, STRINGS["en"])
    try:
        from app.i18n import Strings

        shared = Strings(lang)
    except Exception:  # noqa: BLE001 - the local table is enough
        shared = None

    def tr(key: str) -> str:
        text = shared(key) if shared else key
        return local.get(key, key) if text == key else text
    tr.message = shared.message if shared else str       # a kb.types.Message from models/voice
    return tr


class _Tooltip:
    """A small window with ``text`` shown while the pointer is over ``widget``."""

    def __init__(self, widget: tk.Widget, text: str = "") -> None:
        self.widget, self.text, self._tip = widget, text, None
        widget.bind("<Enter>", self._show, add="+")
        widget.bind("<Leave>", self._hide, add="+")

    def _show(self, _event=None) -> None:
        if not self.text or self._tip is not None:
            return
        self._tip = tk.Toplevel(self.widget)
        self._tip.wm_overrideredirect(True)
        x, y = self.widget.winfo_rootx(), self.widget.winfo_rooty() + self.widget.winfo_height() + 2
        self._tip.wm_geometry(f"+{x}+{y}")
        tk.Label(self._tip, text=self.text, justify="left", wraplength=420, relief="solid",
                 borderwidth=1, background="#ffffe0", padx=4, pady=2).pack()

    def _hide(self, _event=None) -> None:
        if self._tip is not None:
            self._tip.destroy()
            self._tip = None


class VoiceControls(ttk.Frame):
    """Talk button + live partial text + "speak answers" switch + stop-speaking button.

    Args:
        parent: the frame to live in.
        settings: uses stt_engine, stt_model, stt_auto_send, tts_enabled (the switch, saved),
            tts_rate, ui_language.
        set_question: called on the Tk thread with the final recognized text.
        submit: called on the Tk thread after ``set_question`` when ``stt_auto_send`` is on.
        stream_factory: ``sounddevice.RawInputStream``-like constructor (tests pass
            :class:`models.voice.mic.WavInputStream`); when given, the microphone check is skipped.
        hotkey: Tk event sequence bound on the toplevel to toggle listening.
    """

    def __init__(self, parent, settings, set_question: Callable[[str], None], submit: Callable[[], None],
                 *, stream_factory: Callable[..., object] | None = None, hotkey: str = "<F9>",
                 poll_ms: int = 50) -> None:
        super().__init__(parent)
        self.settings, self._set_question, self._submit = settings, set_question, submit
        self._stream_factory, self._poll_ms = stream_factory, poll_ms
        self.tr = _strings(settings.ui_language)
        self._events: queue.Queue[tuple[str, object]] = queue.Queue()
        self._capture: mic.MicCapture | None = None
        self._speaker: Speaker | None = None
        self._speaking = None      # the Future of the answer being read aloud
        self._closed = False
        self._build()
        self.unavailable = self._check_input()
        top = self.winfo_toplevel()
        top.bind(hotkey, self._on_hotkey, add="+")
        self.bind("<Destroy>", lambda e: self.shutdown() if e.widget is self else None, add="+")
        self._poll_id = self.after(self._poll_ms, self._poll)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        """Compact, for the slot beside the question box: two buttons, the switch, the status."""
        self.talk_button = ttk.Button(self, text=self.tr("voice.talk"), command=self.toggle)
        self.talk_button.grid(row=0, column=0, sticky="ew")
        self.stop_button = ttk.Button(self, text=self.tr("voice.stop_speaking"), command=self.stop_speaking,
                                      state="disabled")   # enabled only while an answer is read aloud
        self.stop_button.grid(row=0, column=1, sticky="ew", padx=(3, 0))
        self.speak_var = tk.BooleanVar(self, value=bool(self.settings.tts_enabled))
        self.speak_check = ttk.Checkbutton(self, text=self.tr("voice.speak_answers"),
                                           variable=self.speak_var, command=self._on_speak_toggled)
        self.speak_check.grid(row=1, column=0, columnspan=2, sticky="w", pady=(2, 0))
        self.status_var = tk.StringVar(self, value="")
        self.status = ttk.Label(self, textvariable=self.status_var, wraplength=220, style="Muted.TLabel")
        self.status.grid(row=2, column=0, columnspan=2, sticky="w")
        self.tooltip = _Tooltip(self.talk_button)
        self._status_tip = _Tooltip(self.status)

    def _check_input(self) -> str | None:
        """Disable talking (with the reason) when there is no model or no microphone."""
        reason, short = speech.model_status(self.settings), "voice.no_model"
        if reason is None and self._stream_factory is None:
            reason, short = mic.input_status(), "voice.no_mic"
        if reason:
            self.talk_button.state(["disabled"])
            self.status_var.set(self.tr(short))
            self.tooltip.text = self._status_tip.text = self.tr.message(reason)
        return reason

    # -- talking -----------------------------------------------------------------------------
    @property
    def listening(self) -> bool:
        return self._capture is not None

    def toggle(self) -> None:
        """Start listening, or stop and use what was heard (button and hotkey)."""
        if self.listening:
            self.stop_listening()
        elif not self.unavailable:
            self.start_listening()

    def _on_hotkey(self, _event=None) -> str | None:
        if self._closed:
            return None
        self.toggle()
        return "break"

    def start_listening(self) -> None:
        q, settings = self._events, self.settings   # worker closures must not hold widgets
        capture = mic.MicCapture(lambda: speech.make_recognizer(settings),
                                    on_result=lambda r: q.put(("result", r)),
                                    on_error=lambda msg: q.put(("error", msg)),
                                    stream_factory=self._stream_factory)
        try:
            capture.start()
        except speech.SpeechError as e:
            self._show_error(self.tr.message(reason(e)))
            return
        self._capture = capture
        self.stop_speaking()   # do not transcribe our own voice
        self.talk_button.configure(text=self.tr("voice.stop_talk"))
        self.status_var.set(self.tr("voice.loading"))

    def stop_listening(self) -> None:
        """Close the stream; the final result arrives through the event queue."""
        capture, self._capture = self._capture, None
        self.talk_button.configure(text=self.tr("voice.talk"))
        if capture is not None:
            capture.stop()

    # -- speaking ----------------------------------------------------------------------------
    def _on_speak_toggled(self) -> None:
        on = bool(self.speak_var.get())
        self.settings.set("tts_enabled", on)
        if not on:
            self.stop_speaking()

    def speak_answer(self, text: str):
        """Read ``text`` aloud (reasoning and [n] dropped) when "speak answers" is on.

        Returns:
            the queued job's Future, or None when off or there is nothing to say.
        """
        if not self.speak_var.get() or self._closed:
            return None
        if self._speaker is None:
            q = self._events   # the engine thread must not hold (and finalize) Tk objects
            self._speaker = Speaker(self.settings, on_error=lambda msg: q.put(("error", msg)))
        self._speaking = self._speaker.speak(text)
        if self._speaking is not None:
            self.stop_button.state(["!disabled"])
        return self._speaking

    def stop_speaking(self) -> None:
        if self._speaker is not None:
            self._speaker.stop()
        self._speaking = None
        self.stop_button.state(["disabled"])

    # -- events (Tk thread) -----------------------------------------------------------------
    def _poll(self) -> None:
        try:
            while True:
                kind, payload = self._events.get_nowait()
                if kind == "result":
                    self._on_result(payload)
                else:
                    self._show_error(self.tr.message(payload))
        except queue.Empty:
            pass
        if self._speaking is not None and self._speaking.done():   # read to the end: nothing to stop
            self._speaking = None
            self.stop_button.state(["disabled"])
        if not self._closed:
            self._poll_id = self.after(self._poll_ms, self._poll)

    def _on_result(self, result: speech.SpeechResult) -> None:
        if not result.final:
            self.status_var.set(result.text or self.tr("voice.listening"))
            return
        text = result.text.strip()
        self.status_var.set("" if text else self.tr("voice.heard_nothing"))
        if text:
            self._set_question(text)
            if self.settings.stt_auto_send:
                self._submit()

    def _show_error(self, message: str) -> None:
        log.warning("voice: %s", message)
        if self.listening:
            self.stop_listening()
        self.status_var.set(message if len(message) <= 90 else message[:88] + "…")   # full: tooltip
        self._status_tip.text = message

    def shutdown(self) -> None:
        """Stop listening and speaking and the polling; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._capture is not None:
            self._capture.stop()
            self._capture = None
        self.stop_speaking()
        try:
            self.after_cancel(self._poll_id)
        except tk.TclError:
            pass
