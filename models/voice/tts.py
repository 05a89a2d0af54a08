"""Text to speech: read an answer aloud (pyttsx3; espeak-ng on Linux) or write it to a WAV.

Only the answer is spoken: the ``<think>`` reasoning, the ``[n]`` citation markers and
markdown marks are removed by :func:`speakable_text`. The voice follows the answer's
language (:func:`detect_lang`): a Mandarin voice for mostly-Chinese text, English otherwise.

Threads: one process-wide worker thread owns the pyttsx3 engine (pyttsx3 engines and the
espeak library are not thread-safe and espeak initialises once per process). Speakers put
jobs on its queue, so :meth:`Speaker.speak` never blocks the caller (a Tk thread included)
and :meth:`Speaker.save` blocks only its caller until the file is written.

Playback on the espeak driver: pyttsx3 2.99 plays through ``os.system("aplay ...")`` (needs
alsa-utils, cannot be stopped), so on Linux the speech is rendered to a temporary WAV and played
with sounddevice, which :meth:`Speaker.stop` can interrupt. Other drivers (SAPI5, NSSpeech)
speak natively. When pyttsx3 cannot start, ``espeak-ng -w`` (argument list, text on stdin)
writes the WAV instead.
"""
from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import io
import logging
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class TTSError(RuntimeError):
    """Speech output failed: the message says what is wrong and what to do."""


# -- text ------------------------------------------------------------------------------------
_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_MARKERS = re.compile(r"[\[【]\s*\d+(?:\s*[,，、\-–]\s*\d+)*\s*[\]】]")
_TAGS = re.compile(r"</?[a-zA-Z][^>]*>")
_MARKDOWN = re.compile(r"[*_`#>|]+")


def speakable_text(answer: str) -> str:
    """The part of a model output worth reading aloud.

    Keeps the ``<answer>`` content when there is one (else the text without ``<think>``
    blocks, closed or still open), then drops ``[1]``/``[1, 2]``/``【3】`` citation markers,
    leftover tags and markdown marks, and collapses whitespace.

    >>> speakable_text("<think>long reasoning</think><answer>巴黎 [1][2]。</answer>")
    '巴黎。'
    >>> speakable_text("**Paris** is the capital [1, 3].")
    'Paris is the capital.'
    """
    text = _THINK.sub(" ", answer or "")
    text = text.rsplit("</think>", 1)[-1]   # reasoning whose opening tag was in the prompt
    m = _ANSWER.search(text)
    if m:
        text = m.group(1)
    text = _MARKDOWN.sub(" ", _TAGS.sub(" ", _MARKERS.sub("", text)))
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.;:!?，。；：！？、])", r"\1", text)


def detect_lang(text: str) -> str:
    """"zh" when CJK characters are at least as many as Latin words, else "en".

    >>> detect_lang("北京是中国的首都 (Beijing)"), detect_lang("The capital is 北京")
    ('zh', 'en')
    """
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    latin = len(re.findall(r"[A-Za-z]+", text))
    return "zh" if cjk and cjk >= latin else "en"


# -- the engine worker ---------------------------------------------------------------------------
#: (language, preference) tokens matched against a voice's languages / id / name, best first.
VOICE_TOKENS = {"zh": ("cmn", "zh_cn", "zh-cn", "zh", "chinese"), "en": ("en-us", "en_us", "en", "english")}


class _EngineWorker:
    """The one thread that owns the pyttsx3 engine; runs ``fn(engine)`` jobs in order."""

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.engine = None
        self.init_error = ""
        threading.Thread(target=self._run, name="tts-engine", daemon=True).start()

    def submit(self, fn: Callable) -> cf.Future:
        fut: cf.Future = cf.Future()
        self.jobs.put((fn, fut))
        return fut

    def _run(self) -> None:
        try:
            import pyttsx3

            self.engine = pyttsx3.init()
        except Exception as e:   # ImportError, RuntimeError("could not initialize espeak"), ...
            self.init_error = f"pyttsx3 could not start ({e})"
            log.warning("%s; falling back to the espeak-ng program", self.init_error)
        while True:
            fn, fut = self.jobs.get()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(self.engine))
                except BaseException as e:
                    fut.set_exception(e)


_WORKER: _EngineWorker | None = None
_WORKER_LOCK = threading.Lock()


def _worker() -> _EngineWorker:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = _EngineWorker()
            atexit.register(_finish_speaking, 300.0)
        return _WORKER


def _finish_speaking(timeout: float) -> None:
    """At exit, let queued speech finish (the engine thread is a daemon), so a CLI that calls
    ``speak()`` and returns is still heard. :meth:`Speaker.stop` first makes this immediate."""
    try:
        _worker().submit(lambda engine: None).result(timeout=timeout)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass


def _is_espeak(engine) -> bool:
    return engine is not None and "espeak" in type(engine.proxy._driver).__module__


def pick_voice(engine, lang: str) -> str | None:
    """The id of the installed voice that best fits ``lang`` ("zh"/"en"), or None."""
    best, best_rank = None, len(VOICE_TOKENS["en"]) + 1
    for v in engine.getProperty("voices"):
        fields = [str(x).lower() for x in (v.languages or [])]
        for rank, tok in enumerate(VOICE_TOKENS.get(lang, VOICE_TOKENS["en"])):
            exact = tok in fields or str(v.id).lower().rsplit("/", 1)[-1] == tok
            if rank < best_rank and (exact or (len(tok) > 3 and tok in f"{v.id} {v.name}".lower())):
                best, best_rank = v.id, rank
    return best


# -- the speaker ---------------------------------------------------------------------------------
class Speaker:
    """Reads answers aloud or saves them as WAV.

    Args:
        settings: uses ``tts_rate`` (words per minute). ``tts_enabled`` is the UI's switch
            (see :attr:`enabled`); explicit calls to speak/save always act.
        on_error: called (on the engine thread) with one message when speaking fails.
    """

    def __init__(self, settings, on_error: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_error = on_error or (lambda msg: log.error("%s", msg))
        self._generation = 0          # stop() bumps it; queued jobs of older generations skip
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.tts_enabled)

    # public API ---------------------------------------------------------------------------
    def speak(self, text: str, lang: str | None = None) -> cf.Future | None:
        """Queue ``speakable_text(text)`` to be spoken; returns at once (None if nothing to say)."""
        say = speakable_text(text)
        if not say:
            return None
        gen = self._generation
        return _worker().submit(lambda engine: self._speak_job(engine, say, lang or detect_lang(say), gen))

    def save(self, text: str, wav_path: str | Path, lang: str | None = None) -> Path:
        """Write ``speakable_text(text)`` spoken to ``wav_path`` (mono 16-bit WAV); blocks.

        Raises:
            TTSError: nothing to say, or neither pyttsx3 nor espeak-ng could write the file.
        """
        say = speakable_text(text)
        if not say:
            raise TTSError("the answer has no speakable text (empty after removing reasoning and [n])")
        path = Path(wav_path).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        lang = lang or detect_lang(say)
        return _worker().submit(lambda engine: self._save_job(engine, say, path, lang)).result()

    def stop(self) -> None:
        """Stop speaking now and drop what is queued (from any thread)."""
        self._generation += 1
        self._stop.set()
        engine = _WORKER.engine if _WORKER else None
        if engine is not None and not _is_espeak(engine):
            engine.stop()

    # engine-thread jobs ---------------------------------------------------------------------
    def _configure(self, engine, lang: str) -> None:
        voice = pick_voice(engine, lang)
        if voice:
            engine.setProperty("voice", voice)
        engine.setProperty("rate", int(self.settings.tts_rate))

    def _save_job(self, engine, text: str, path: Path, lang: str) -> Path:
        if engine is not None:
            self._configure(engine, lang)
            path.unlink(missing_ok=True)
            if self._pyttsx3_save(engine, text, path) and path.is_file() and path.stat().st_size > 44:
                return path
            log.warning("pyttsx3 wrote no audio to %s; trying the espeak-ng program", path)
        return espeak_cli_save(text, path, lang, int(self.settings.tts_rate))

    @staticmethod
    def _pyttsx3_save(engine, text: str, path: Path) -> bool:
        """save_to_file + runAndWait, then (espeak driver) wait for "finished-utterance".

        pyttsx3 2.99's espeak driver ends runAndWait as soon as synthesis *starts* (espeak-ng
        synthesizes asynchronously in retrieval mode) and writes the WAV from the callback
        later, printing "Audio saved to ..." on stdout. Waiting for the event makes the file
        complete on return; stdout is redirected meanwhile so a CLI's JSON output stays clean.
        """
        done = threading.Event()
        token = engine.connect("finished-utterance", lambda **kw: done.set())
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                engine.save_to_file(text, str(path))
                engine.runAndWait()
                return done.wait(30 + len(text) / 5) if _is_espeak(engine) else True
        finally:
            engine.disconnect(token)

    def _speak_job(self, engine, text: str, lang: str, gen: int) -> None:
        if gen != self._generation:
            return
        self._stop.clear()
        try:
            if engine is not None and not _is_espeak(engine):
                self._configure(engine, lang)
                engine.say(text)
                engine.runAndWait()
                return
            with tempfile.TemporaryDirectory() as tmp:
                wav = self._save_job(engine, text, Path(tmp) / "speech.wav", lang)
                if gen == self._generation:
                    self._play(wav)
        except Exception as e:
            self.on_error(str(e) if isinstance(e, TTSError) else f"speaking failed: {e!r}")

    def _play(self, wav: Path) -> None:
        import numpy as np

        try:
            import sounddevice as sd

            with wave.open(str(wav), "rb") as wf:
                rate = wf.getframerate()
                data = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
            sd.play(data, rate)
        except Exception as e:   # OSError (no PortAudio) or PortAudioError (no output device)
            raise TTSError(f"cannot play audio ({e}); check the audio output device, "
                           "or use `ask --speak-to FILE.wav`") from None
        while sd.get_stream().active and not self._stop.wait(0.05):
            pass
        sd.stop()


def espeak_cli_save(text: str, path: Path, lang: str, rate: int) -> Path:
    """Write speech with the ``espeak-ng`` program (argument list, text on stdin).

    Raises:
        TTSError: espeak-ng is not installed or failed.
    """
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if not exe:
        raise TTSError("no speech engine: install pyttsx3 with espeak-ng "
                       "(Debian: apt-get install espeak-ng)")
    voice = "cmn" if lang == "zh" else "en-us"
    proc = subprocess.run([exe, "-v", voice, "-s", str(rate), "-w", str(path), "--stdin"],
                          input=text.encode("utf-8"), capture_output=True, timeout=300)
    if proc.returncode != 0 or not path.is_file():
        raise TTSError(f"espeak-ng failed ({proc.stderr.decode(errors='replace').strip()})")
    return path
