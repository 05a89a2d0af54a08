"""Keep a folder in sync with a knowledge base (``python main.py watch``; the app's switch).

:class:`FolderSync` watches a folder with watchdog (the kept library for file events: inotify,
FSEvents, ReadDirectoryChangesW) and, after a quiet period, ingests new and changed files and
removes deleted ones; a rename is a removal plus an addition (the removal first, so the renamed
file's bytes are not taken for a duplicate of the old path). On start it reconciles once: the
folder is ingested (unchanged files are skipped by sha256) and documents of the folder whose files
are gone are removed.

A file is taken only when it is *stable*: no event for ``quiet_s`` seconds, the same size and
mtime as at its last event (else it waits another ``quiet_s``: a change no event reported), and (where the platform reports opens and closes, Linux
inotify) no handle of any process open on it. A copy in progress, or a file a program keeps
open while writing, is therefore not ingested half-written; it is once the writer closes it
(or, when no close is ever reported, after ``max_open_s`` of silence).

Threads: watchdog calls :meth:`FolderSync.dispatch` on its observer thread (it only records
paths); one worker thread of this object runs the ingests and removals through the
:class:`kb.service.KnowledgeBaseService` and reports each step to ``on_event`` (called on that
worker thread: a GUI must hand it to its own thread, see app/folder_sync.py).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kb import loaders

log = logging.getLogger(__name__)

#: seconds without events (and between the two size looks) before a file is taken
QUIET_S = 2.0
#: seconds of silence after which a file reported open but never closed is taken anyway
MAX_OPEN_S = 300.0


@dataclass
class SyncEvent:
    """One thing a sync did or saw, for ``on_event``.

    Attributes:
        kind: "started" (watching; ``count``: files ingested by the first reconcile),
            "progress" (``done``/``total`` files, ``message``), "result" (``result``: an
            :class:`kb.types.IngestResult`), "removed" (``path``), "error" (``message``: one
            line), "idle" (a batch finished), "stopped".
    """

    kind: str
    path: str = ""
    message: str = ""
    result: object = None
    done: float = 0.0
    total: float = 0.0
    count: int = 0


@dataclass
class _Seen:
    last_event: float
    stat: tuple | None = None      # (size, mtime_ns) at the last event or look


@dataclass
class FolderSync:
    """Sync ``folder`` into knowledge base ``kb`` of ``service`` until :meth:`stop`.

    Args:
        service: a :class:`kb.service.KnowledgeBaseService`.
        folder: the folder (watched recursively; hidden entries and unsupported types ignored).
        kb: display name (None: the default knowledge base).
        on_event: called with each :class:`SyncEvent` on the worker thread.
        quiet_s: seconds of quiet before a file is taken (see module docstring).
        max_open_s: see :data:`MAX_OPEN_S`.
    """

    service: object
    folder: Path
    kb: str | None = None
    on_event: object = None
    quiet_s: float = QUIET_S
    max_open_s: float = MAX_OPEN_S
    _seen: dict = field(default_factory=dict)      # path -> _Seen, for paths changed since the last batch
    _opens: dict = field(default_factory=dict)     # path -> opens minus closes reported (inotify)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.folder = Path(self.folder).expanduser().resolve()
        self._observer = None
        self._worker: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FolderSync:
        """Start watching (events are recorded from now on), then reconcile on the worker thread.

        Raises:
            FileNotFoundError: the folder does not exist (nothing started).
        """
        from watchdog.observers import Observer

        if not self.folder.is_dir():
            raise FileNotFoundError(f"no folder {self.folder}; check the path")
        self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.folder), recursive=True)
        self._observer.start()
        self._worker = threading.Thread(target=self._run, daemon=True, name=f"folder-sync {self.folder.name}")
        self._worker.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching; an ingest in progress stops at its next file (the store stays consistent)."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._worker is not None:
            self._worker.join(timeout)

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _emit(self, ev: SyncEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # noqa: BLE001  (a listener's bug must not stop the sync)
                log.exception("folder sync listener failed")

    # -- events (observer thread) ---------------------------------------------------------------
    def dispatch(self, kind: str, path: str, dest: str = "", is_dir: bool = False) -> None:
        """Record a file event (watchdog's names: created, modified, moved, deleted, opened,
        closed, closed_no_write). Cheap: the worker does the rest."""
        now = time.monotonic()
        with self._lock:
            for p in ([path, dest] if dest else [path]):
                if not self._relevant(p, is_dir):
                    continue
                if kind == "opened":
                    self._opens[p] = self._opens.get(p, 0) + 1
                elif kind in ("closed", "closed_no_write"):
                    self._opens[p] = max(0, self._opens.get(p, 0) - 1)
                if kind in ("opened", "closed_no_write"):   # reads (our own ingest too) are not changes
                    continue
                seen = self._seen.setdefault(p, _Seen(now))
                seen.last_event, seen.stat = now, _stat(p)    # compared with a look quiet_s later
        self._wake.set()

    def _relevant(self, p: str, is_dir: bool) -> bool:
        try:
            rel = Path(p).relative_to(self.folder)
        except ValueError:
            return False
        if not rel.parts or any(part.startswith((".", "~$")) for part in rel.parts):
            return False
        return is_dir or loaders.is_supported(Path(p)) or Path(p).suffix.lower() == ".doc"

    # -- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            results = self._reconcile()
            self._emit(SyncEvent("started", str(self.folder), count=sum(r.status in ("added", "updated")
                                                                          for r in results)))
            while not self._stop.is_set():
                ready, wait = self._ready()
                if ready:
                    self._apply(ready)
                    self._emit(SyncEvent("idle", str(self.folder)))
                    continue
                self._wake.wait(wait)
                self._wake.clear()
        except Exception as e:  # noqa: BLE001  (one line for the user; the details in the log)
            log.exception("folder sync of %s stopped", self.folder)
            self._emit(SyncEvent("error", str(self.folder), message=f"syncing {self.folder} stopped: {e}"))
        finally:
            self._emit(SyncEvent("stopped", str(self.folder)))

    def _ready(self) -> tuple[list[str], float]:
        """Paths stable now, and how long to wait before the next look."""
        now, ready, wait = time.monotonic(), [], self.quiet_s
        with self._lock:
            for p, seen in list(self._seen.items()):
                quiet = now - seen.last_event
                if quiet < self.quiet_s:
                    wait = min(wait, max(self.quiet_s - quiet, 0.05))
                    continue
                if self._opens.get(p) and quiet < self.max_open_s:     # a writer still has it open
                    continue
                stat = _stat(p)
                if stat is not None and stat != seen.stat:     # it changed without an event
                    seen.stat, seen.last_event = stat, now
                    continue
                ready.append(p)
                del self._seen[p]
        return sorted(ready), wait

    def _apply(self, paths: list[str]) -> None:
        """Removals first (a rename's old path), then one ingest of the files that exist."""
        gone = [p for p in paths if not os.path.exists(p)]
        for p in gone:
            self._remove_under(p)
        files = [Path(p) for p in paths if os.path.exists(p)]    # (a folder moved in: all its files)
        if files:
            self._ingest(files)

    def _reconcile(self) -> list:
        """Ingest the folder, and remove documents of it whose files are gone."""
        for d in self.service.documents(self.kb) if self._kb_exists() else []:
            if Path(d.source).is_relative_to(self.folder) and not Path(d.source).exists():
                self._remove(d.source)
        return self._ingest([self.folder])

    def _kb_exists(self) -> bool:
        name = self.kb or self.service.settings.default_kb
        return name == self.service.settings.default_kb or any(k.name == name for k in self.service.list_kbs())

    def _remove_under(self, path: str) -> None:
        """Remove the document at ``path``, or every document under it (a deleted folder)."""
        prefix = path.rstrip(os.sep) + os.sep
        for d in self.service.documents(self.kb):
            if d.source == path or d.source.startswith(prefix):
                self._remove(d.source)

    def _remove(self, source: str) -> None:
        try:
            self.service.remove(source, self.kb)
            self._emit(SyncEvent("removed", source))
        except KeyError as e:
            log.debug("not removed %s: %s", source, e)    # removed meanwhile (another client, or twice)
        except (OSError, TimeoutError, ValueError) as e:
            self._emit(SyncEvent("error", source, message=f"{Path(source).name}: {e}"))

    def _ingest(self, paths: list[Path]) -> list:
        def progress(done, total, message):
            self._emit(SyncEvent("progress", message=message, done=done, total=total))

        try:
            return self.service.ingest(paths, self.kb, on_progress=progress, cancel=self._stop,
                                       on_result=lambda r: self._emit(SyncEvent("result", r.path, r.message, r)))
        except (OSError, TimeoutError, ValueError, KeyError) as e:
            self._emit(SyncEvent("error", str(self.folder), message=" ".join(str(e).split())))
            return []


def _stat(p: str) -> tuple | None:
    try:
        st = os.stat(p)
    except OSError:
        return None                             # gone: a removal, ready at once
    return st.st_size, st.st_mtime_ns


class _Handler:
    """watchdog handler: forwards every event to :meth:`FolderSync.dispatch` (observer thread)."""

    _KINDS = {"FileOpenedEvent": "opened", "FileClosedEvent": "closed", "FileClosedNoWriteEvent": "closed_no_write"}

    def __init__(self, sync: FolderSync):
        self.sync = sync

    def dispatch(self, event) -> None:
        if event.is_directory and event.event_type == "modified":
            return                              # a folder's listing changed: its files say what
        kind = self._KINDS.get(type(event).__name__, event.event_type)
        dest = getattr(event, "dest_path", "") or ""
        self.sync.dispatch(kind, os.fsdecode(event.src_path), os.fsdecode(dest), event.is_directory)
