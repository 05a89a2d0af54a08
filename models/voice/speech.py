"""Speech to text: a one-method recognizer interface, vosk and faster-whisper engines,
WAV input. Microphone capture is in :mod:`models.voice.mic`.

Audio everywhere in this module is 16 kHz mono signed 16-bit little-endian PCM ("pcm16"),
the format vosk's examples use (alphacep/vosk-api ``python/example/test_microphone.py``).

Threads: recognizers are not thread-safe: one thread feeds one recognizer. Loaded models
are cached per folder and shared (loading is guarded by a lock).
"""
from __future__ import annotations

import json
import logging
import threading
import wave
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np

from kb.types import Message, reason

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000          # Hz, what both engines expect
VOSK_SITE = "https://alphacephei.com/vosk/models"
VOSK_MODELS = {"zh": "vosk-model-small-cn-0.22", "en": "vosk-model-small-en-us-0.15"}
SOX_HINT = "convert it with: sox INPUT -r 16000 -c 1 -b 16 -e signed-integer OUTPUT.wav"


class SpeechError(RuntimeError):
    """Speech input cannot work: the message says what is wrong and what to do."""


@dataclass
class SpeechResult:
    """What a recognizer heard so far.

    Attributes:
        text: the whole utterance so far (earlier finished segments + the current one).
        final: True once the audio has ended (the text will not change any more).
        raw: the engine's own result for the last chunk (vosk: the parsed JSON).
    """

    text: str
    final: bool = False
    raw: dict = field(default_factory=dict)


# -- WAV input ---------------------------------------------------------------------------------
def read_wav(path: str | Path, rate: int = SAMPLE_RATE) -> bytes:
    """Read a 16-bit PCM WAV as mono pcm16 at ``rate`` Hz.

    Stereo (or more channels) is averaged to mono; other sample rates are resampled with
    ``scipy.signal.resample_poly`` (polyphase FIR, the ratio reduced by its gcd).

    Args:
        path: a .wav file, 16-bit signed integer PCM, any sample rate and channel count.
        rate: output sample rate in Hz.

    Returns:
        little-endian int16 samples, ``2 * n_samples`` bytes.

    Raises:
        SpeechError: the file is missing, not a WAV, or not 16-bit integer PCM (8/24/32-bit
            and float WAVs are rejected with a sox command that converts them).
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechError(f"{path}: no such file; give a 16-bit PCM WAV recording")
    try:
        with wave.open(str(path), "rb") as wf:
            width, channels, src_rate = wf.getsampwidth(), wf.getnchannels(), wf.getframerate()
            frames = wf.readframes(wf.getnframes())
    except (wave.Error, EOFError) as e:
        kind = "a float or compressed WAV" if "unknown format" in str(e) else "not a WAV file"
        raise SpeechError(f"{path}: {kind} ({e}); only 16-bit PCM WAV is read; {SOX_HINT}") from None
    if width != 2:
        raise SpeechError(f"{path}: {8 * width}-bit samples; only 16-bit PCM WAV is read; {SOX_HINT}")
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)   # (n, channels)
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0].astype(np.float64)
    if src_rate != rate:
        from scipy.signal import resample_poly

        g = gcd(src_rate, rate)
        mono = resample_poly(mono, rate // g, src_rate // g)
    return np.clip(np.round(mono), -32768, 32767).astype("<i2").tobytes()


def pcm16_to_float(pcm16: bytes) -> np.ndarray:
    """int16 bytes -> float32 array in [-1, 1), shape (n_samples,)."""
    return np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0


def join_words(words: list[str]) -> str:
    """Join recognized words with spaces, except between two CJK characters.

    >>> join_words(["北京", "是", "首都", "ok", "go"])
    '北京是首都 ok go'
    """
    out = ""
    for w in (w.strip() for w in words):
        if not w:
            continue
        if out and not (_is_cjk(out[-1]) and _is_cjk(w[0])):
            out += " "
        out += w
    return out


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


# -- recognizers -------------------------------------------------------------------------------
class Recognizer(ABC):
    """A speech recognizer fed pcm16 chunks. Subclasses implement :meth:`accept` only."""

    @abstractmethod
    def accept(self, pcm16: bytes, *, last: bool = False) -> SpeechResult:
        """Feed one chunk of 16 kHz mono int16 audio; ``last=True`` ends the utterance.

        Returns:
            a partial result (``final=False``), or the final one when ``last`` is True.
        """

    def final(self) -> SpeechResult:
        """End the audio and return the final result."""
        return self.accept(b"", last=True)

    def transcribe(self, pcm16: bytes, chunk_bytes: int = 8000) -> str:
        """Recognize a whole recording, fed in ``chunk_bytes`` pieces; returns the text."""
        for i in range(0, len(pcm16), chunk_bytes):
            self.accept(pcm16[i:i + chunk_bytes])
        return self.final().text


_MODELS: dict[tuple[str, str], object] = {}   # (engine, folder) -> loaded model, shared by threads
_MODELS_LOCK = threading.Lock()


def _cached_model(engine: str, folder: Path, load: Callable[[], object]) -> object:
    key = (engine, str(folder.resolve()))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load()
        return _MODELS[key]


class VoskRecognizer(Recognizer):
    """Streaming recognizer on a vosk (Kaldi) model folder; partial results per chunk."""

    def __init__(self, model_dir: str | Path) -> None:
        import vosk

        vosk.SetLogLevel(-1)   # quiet: Kaldi logs go to stderr otherwise
        folder = Path(model_dir)

        def load():
            try:
                return vosk.Model(str(folder))
            except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
                raise SpeechError(f"{folder} is not a vosk model folder ({e}); unzip a model "
                                  f"from {VOSK_SITE} there") from None

        self._rec = vosk.KaldiRecognizer(_cached_model("vosk", folder, load), SAMPLE_RATE)
        self._done: list[str] = []   # finished segments (vosk ends one at each pause)

    def accept(self, pcm16: bytes, *, last: bool = False) -> SpeechResult:
        if pcm16 and self._rec.AcceptWaveform(pcm16):
            raw = json.loads(self._rec.Result())
            self._done.append(raw.get("text", ""))
            if not last:
                return SpeechResult(join_words(self._done), False, raw)
        if last:
            raw = json.loads(self._rec.FinalResult())
            return SpeechResult(join_words(self._done + [raw.get("text", "")]), True, raw)
        raw = json.loads(self._rec.PartialResult())
        return SpeechResult(join_words(self._done + [raw.get("partial", "")]), False, raw)


class WhisperRecognizer(Recognizer):
    """faster-whisper (CTranslate2) on CPU, int8; buffers audio and decodes at the end.

    Partial results carry no text (whisper is not streaming); the language is detected.
    """

    def __init__(self, model_dir: str | Path, beam_size: int = 1) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise SpeechError("stt_engine is whisper but faster-whisper is not installed: "
                              "python -m pip install faster-whisper, or set stt_engine: vosk") from None
        folder = Path(model_dir)
        self._model = _cached_model(
            "whisper", folder, lambda: WhisperModel(str(folder), device="cpu", compute_type="int8"))
        self._beam = beam_size
        self._buf = bytearray()

    def accept(self, pcm16: bytes, *, last: bool = False) -> SpeechResult:
        self._buf += pcm16
        if not last:
            return SpeechResult("", False, {"buffered_s": len(self._buf) / 2 / SAMPLE_RATE})
        audio = pcm16_to_float(bytes(self._buf))
        self._buf.clear()
        segments, info = self._model.transcribe(audio, beam_size=self._beam)
        text = join_words([s.text for s in segments])
        return SpeechResult(text, True, {"text": text, "language": info.language})


# -- models and factory ------------------------------------------------------------------------
def find_model_dir(settings) -> Path:
    """The model folder for ``settings.stt_engine``: ``settings.stt_model`` when set, else
    (vosk) a ``vosk-model*`` folder under ``<models_dir>/vosk/``, preferring the UI language.

    Raises:
        SpeechError: unknown engine, or no folder; the message names the folder to create.
    """
    engine = settings.stt_engine
    if engine not in ("vosk", "whisper"):
        raise SpeechError(f"stt_engine is {engine!r}; set it to vosk or whisper")
    if settings.stt_model:
        folder = Path(settings.stt_model).expanduser()
        if not folder.is_dir():
            raise SpeechError(f"stt_model {folder} is not a folder; unzip a {engine} model there "
                              "or clear stt_model")
        return folder
    if engine == "whisper":
        raise SpeechError("stt_engine is whisper: set stt_model (TQTS_STT_MODEL) to a faster-whisper "
                          "(CTranslate2) model folder, e.g. one converted from openai/whisper-base")
    vosk_dir = settings.models_dir / "vosk"
    found = sorted(p for p in vosk_dir.glob("vosk-model*") if p.is_dir()) if vosk_dir.is_dir() else []
    want = "-cn" if settings.ui_language == "zh" else "-en"
    found.sort(key=lambda p: want not in p.name)
    if found:
        return found[0]
    name = VOSK_MODELS.get(settings.ui_language, VOSK_MODELS["en"])
    raise SpeechError(Message("no_speech_model", "no speech model: run `python main.py voice pull {lang}`, or "
                              "download {name}.zip from {site} and unzip it into {folder}/ (or set stt_model to "
                              "its folder)", lang=settings.ui_language, name=name, site=VOSK_SITE,
                              folder=str(vosk_dir)))


def make_recognizer(settings) -> Recognizer:
    """A new recognizer for ``settings.stt_engine`` (models are loaded once and cached).

    Raises:
        SpeechError: no model folder, an unreadable model, or faster-whisper missing.
    """
    folder = find_model_dir(settings)
    return VoskRecognizer(folder) if settings.stt_engine == "vosk" else WhisperRecognizer(folder)


def transcribe_file(path: str | Path, settings) -> str:
    """Recognize a WAV file with the engine in ``settings.stt_engine``.

    Args:
        path: a 16-bit PCM WAV (any rate; stereo is downmixed), see :func:`read_wav`.
        settings: uses stt_engine, stt_model, models_dir, ui_language.

    Returns:
        the recognized text, stripped ("" for silence).

    Raises:
        SpeechError: bad WAV or no usable model, with what to do.
    """
    find_model_dir(settings)          # a settings problem is reported before the file is read
    pcm = read_wav(path)
    return make_recognizer(settings).transcribe(pcm).strip()


def model_status(settings) -> str | None:
    """None when a speech model folder is configured/found, else the message saying what to do."""
    try:
        find_model_dir(settings)
    except SpeechError as e:
        return reason(e)
    return None
