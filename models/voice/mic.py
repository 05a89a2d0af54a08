"""Microphone capture for speech input; a WAV file can stand in for the microphone.

The pattern of alphacep/vosk-api ``python/example/test_microphone.py``: a
``sounddevice.RawInputStream`` at 16 kHz mono int16 whose callback only enqueues bytes, and
a worker thread that feeds the recognizer. The stream constructor is injectable, so
:class:`WavInputStream` (same keywords, same ``callback(indata, frames, time, status)``)
replaces the microphone in tests and demos.

Threads: the stream callback runs on the audio thread (PortAudio's, or WavInputStream's);
:class:`MicCapture` recognizes on its own worker thread and calls ``on_result`` /
``on_error`` there, so a GUI must marshal them to its own thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from math import gcd
from pathlib import Path

import numpy as np

from kb.types import Message
from models.voice.speech import SAMPLE_RATE, Recognizer, SpeechError, SpeechResult, read_wav

log = logging.getLogger(__name__)


def input_status() -> str | None:
    """None when sounddevice sees an input device, else a message saying what is missing."""
    try:
        import sounddevice as sd

        sd.query_devices(kind="input")
    except OSError as e:   # PortAudio library missing
        return Message("no_audio_library", "no audio library ({error}); install PortAudio (Debian: apt-get install "
                       "libportaudio2)", error=str(e))
    except Exception as e:   # sounddevice.PortAudioError: no default input device
        return Message("no_microphone", "no microphone found ({error}); plug one in and restart", error=str(e))
    return None


def default_stream_factory(**kw):
    """``sounddevice.RawInputStream(**kw)``; if the device refuses the requested rate, it is
    opened at its own default rate (the stream's ``samplerate`` tells; :class:`MicCapture`
    resamples).

    Raises:
        SpeechError: no PortAudio or no usable input device.
    """
    try:
        import sounddevice as sd

        try:
            return sd.RawInputStream(**kw)
        except sd.PortAudioError:
            native = int(sd.query_devices(kw.get("device"), "input")["default_samplerate"])
            if native == kw.get("samplerate"):
                raise
            return sd.RawInputStream(**{**kw, "samplerate": native})
    except Exception as e:
        raise SpeechError(f"cannot open the microphone ({e}); check that one is plugged in") from None


class _Resampler:
    """int16 chunks at ``src`` Hz -> int16 bytes at ``dst`` Hz (resample_poly per chunk)."""

    def __init__(self, src: int, dst: int = SAMPLE_RATE) -> None:
        g = gcd(src, dst)
        self.up, self.down = dst // g, src // g

    def __call__(self, pcm16: bytes) -> bytes:
        if self.up == self.down or not pcm16:
            return pcm16
        from scipy.signal import resample_poly

        y = resample_poly(np.frombuffer(pcm16, dtype="<i2").astype(np.float64), self.up, self.down)
        return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


class WavInputStream:
    """Stands in for ``sounddevice.RawInputStream``, playing a WAV into the callback.

    Same constructor keywords and ``callback(indata, frames, time, status)`` signature; calls
    come from its own thread, like PortAudio's. After the file (plus ``tail_s`` of silence)
    it stops calling and sets :attr:`finished`, as a muted microphone would.

    Args:
        wav_path: the recording (see :func:`read_wav`).
        realtime: pace blocks at the sample rate (False: as fast as the consumer allows).
    """

    def __init__(self, wav_path: str | Path, *, samplerate=SAMPLE_RATE, blocksize=8000,
                 dtype="int16", channels=1, callback=None, realtime=False, tail_s=0.5, **_ignored):
        if dtype != "int16" or channels != 1:
            raise ValueError("WavInputStream gives mono int16 only")
        self._pcm = read_wav(wav_path, int(samplerate)) + b"\0" * int(2 * samplerate * tail_s)
        self.samplerate, self.blocksize, self.callback = int(samplerate), blocksize, callback
        self._realtime, self._stop = realtime, threading.Event()
        self.finished = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wav-input", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        step = 2 * self.blocksize
        for i in range(0, len(self._pcm), step):
            if self._stop.is_set():
                break
            block = self._pcm[i:i + step]
            self.callback(block, len(block) // 2, None, 0)
            self._stop.wait(self.blocksize / self.samplerate if self._realtime else 0.001)
        self.finished.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    close = abort = stop

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class MicCapture:
    """Push-to-talk capture: start() opens the input stream, stop() ends the utterance.

    Args:
        make_recognizer: called once on the worker thread (model loading stays off the
            caller's thread; audio captured meanwhile waits in the queue).
        on_result: called on the worker thread with each partial and then the final result.
        on_error: called on the worker thread with one message if anything fails.
        stream_factory: ``RawInputStream``-like constructor (default: sounddevice's); tests
            pass :class:`WavInputStream` bound to a file.
        blocksize: frames per callback (8000 = 0.5 s at 16 kHz, as in vosk's example).
    """

    def __init__(self, make_recognizer: Callable[[], Recognizer],
                 on_result: Callable[[SpeechResult], None],
                 on_error: Callable[[str], None] = lambda msg: log.error("%s", msg),
                 *, stream_factory: Callable[..., object] | None = None, blocksize: int = 8000):
        self._make, self._on_result, self._on_error = make_recognizer, on_result, on_error
        self._factory = stream_factory or default_stream_factory
        self._blocksize = blocksize
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._stream = None
        self._worker: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._stream is not None

    def _callback(self, indata, frames, time_info, status) -> None:
        """Audio thread: only enqueue the bytes (never block, never recognize here)."""
        if status:
            log.warning("audio input: %s", status)
        self._queue.put(bytes(indata))

    def start(self) -> None:
        """Open and start the input stream and the worker thread.

        Raises:
            SpeechError: the stream cannot be opened (no microphone).
        """
        if self.running:
            return
        self._queue = queue.Queue()
        stream = self._factory(samplerate=SAMPLE_RATE, blocksize=self._blocksize, dtype="int16",
                               channels=1, callback=self._callback)
        stream.start()
        self._stream = stream
        convert = _Resampler(int(getattr(stream, "samplerate", SAMPLE_RATE)))
        self._worker = threading.Thread(target=self._work, args=(self._queue, convert),
                                        name="speech-worker", daemon=True)
        self._worker.start()

    def stop(self, wait: bool = False) -> None:
        """Close the stream; the worker then emits the final result. Safe to call twice."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.stop()
            stream.close()
        finally:
            self._queue.put(None)
        if wait and self._worker:
            self._worker.join()

    def _work(self, q: queue.Queue, convert: Callable[[bytes], bytes]) -> None:
        try:
            rec = self._make()
            while (chunk := q.get()) is not None:
                self._on_result(rec.accept(convert(chunk)))
            self._on_result(rec.final())
        except Exception as e:
            self._on_error(str(e) if isinstance(e, SpeechError) else f"speech recognition failed: {e!r}")
