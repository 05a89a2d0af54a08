"""Worker threads and the queue that brings their events back to the Tk thread.

Threads: :meth:`Dispatcher.submit` is called on the Tk thread; the job function runs on a
new worker thread and may only call ``emit`` (which puts on a queue) — never a widget. The
Tk thread drains the queue every ``interval_ms`` with ``after()`` and calls the job's
``on_event`` there (the thonny ``queue_event`` / ``poll_events`` pattern). Each job has a
request id and a ``threading.Event`` for cancel; events of a job marked stale are dropped.
A worker exception becomes a final ``("failed", message)`` event the UI shows.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: An event handler on the Tk thread: ``on_event(kind, payload)``.
Handler = Callable[[str, object], None]


def error_message(e: BaseException) -> str:
    """One line for the user: the message of our own errors (they say what to do), else the
    exception type with its message."""
    from kb.types import reason
    from models.backend import BackendError

    text = str(e).strip() or type(e).__name__
    if isinstance(e, (BackendError, ValueError, OSError)):
        return reason(e) if text == str(e) else text     # a kb.types.Message keeps its key for the UI
    return f"{type(e).__name__}: {text}"


@dataclass
class Job:
    """A unit of background work.

    Attributes:
        id: request id (increasing); handlers compare it with the one they wait for.
        name: what it does, for logs.
        cancel: set to ask the worker to stop (passed to services as ``cancel``).
        stale: when True its remaining events are dropped.
    """

    id: int
    name: str
    on_event: Handler
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    stale: bool = False

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class Dispatcher:
    """Runs jobs on worker threads and delivers their events on the Tk thread.

    Args:
        root: the Tk root (its ``after`` drives the polling).
        interval_ms: polling period; 30-50 ms keeps streamed text smooth.
        budget_ms: at most this long spent handling events per tick, so input stays live.

    Attributes:
        max_gap_ms: the longest gap between two ticks since :meth:`reset_gap` (a health
            measure: a long gap means something blocked the Tk thread).
    """

    def __init__(self, root, interval_ms: int = 40, budget_ms: int = 60) -> None:
        self.root = root
        self.interval_ms = interval_ms
        self.budget_ms = budget_ms
        self.jobs: dict[int, Job] = {}
        self.max_gap_ms = 0.0
        self.ticks = 0
        self._queue: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._last_tick = time.monotonic()
        self._closed = False
        self._after_id = root.after(interval_ms, self._poll)

    # -- Tk thread -------------------------------------------------------------------
    def submit(self, name: str, fn: Callable[[Callable[[str, object], None], threading.Event], object],
               on_event: Handler) -> Job:
        """Start ``fn(emit, cancel)`` on a worker thread.

        ``emit(kind, payload)`` queues an event for ``on_event``. When ``fn`` returns, a
        ``("finished", return_value)`` event follows; when it raises, ``("failed", message)``.

        Returns:
            the :class:`Job` (its ``id`` is the request id, ``cancel`` its stop event).
        """
        job = Job(next(self._ids), name, on_event)
        self.jobs[job.id] = job

        def emit(kind: str, payload: object = None) -> None:
            self._queue.put((job.id, kind, payload))

        def body() -> None:
            try:
                emit("finished", fn(emit, job.cancel))
            except Exception as e:  # noqa: BLE001 - every failure must reach the user
                log.exception("job %s failed", name)
                emit("failed", error_message(e))

        job.thread = threading.Thread(target=body, name=f"tqts-{name}-{job.id}", daemon=True)
        job.thread.start()
        return job

    def reset_gap(self) -> None:
        """Start a new measurement of :attr:`max_gap_ms`."""
        self._last_tick = time.monotonic()
        self.max_gap_ms = 0.0

    def _poll(self) -> None:
        now = time.monotonic()
        self.max_gap_ms = max(self.max_gap_ms, (now - self._last_tick) * 1000)
        self._last_tick = now
        self.ticks += 1
        deadline = now + self.budget_ms / 1000
        while time.monotonic() < deadline:
            try:
                job_id, kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            self._deliver(job_id, kind, payload)
        if not self._closed:
            self._after_id = self.root.after(self.interval_ms, self._poll)

    def _deliver(self, job_id: int, kind: str, payload: object) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        if kind in ("finished", "failed"):
            self.jobs.pop(job_id, None)
        if job.stale:
            return
        try:
            job.on_event(kind, payload)
        except Exception:  # noqa: BLE001 - a handler bug must not stop the polling
            log.exception("handler of %s failed on %s", job.name, kind)

    def cancel(self, job: Job | None, *, stale: bool = False) -> None:
        """Ask ``job`` to stop; with ``stale`` its later events are dropped."""
        if job is not None:
            job.cancel.set()
            job.stale = job.stale or stale

    def busy(self, prefix: str = "") -> bool:
        """Whether a job whose name starts with ``prefix`` is still running."""
        return any(j.running and j.name.startswith(prefix) for j in self.jobs.values())

    def shutdown(self, timeout: float = 5.0) -> list[str]:
        """Cancel every job and join the workers (at most ``timeout`` seconds in all).

        Returns:
            names of jobs still running after the timeout (daemon threads; they die with us).
        """
        self._closed = True
        try:
            self.root.after_cancel(self._after_id)
        except Exception:  # noqa: BLE001 - root may already be gone
            pass
        for job in self.jobs.values():
            job.cancel.set()
            job.stale = True
        end = time.monotonic() + timeout
        for job in list(self.jobs.values()):
            if job.thread is not None:
                job.thread.join(max(0.0, end - time.monotonic()))
        return [j.name for j in self.jobs.values() if j.running]
