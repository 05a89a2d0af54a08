"""Grounded tasks seen from the app: ``python -m trainer tasks`` as a subprocess with progress,
its summary and a few examples (the Retrain dialog's "my knowledge base" choice). No tkinter
and no torch here.

Files: ``<data dir>/tasks/<kb>-<UTC time>.jsonl`` (the tasks file, see :mod:`trainer.tasks`),
``….log`` (the subprocess' stdout + stderr: one JSON progress line per task, then the printed
summary) and ``….summary.json`` (the summary plus three examples, written when it ends well).

Threads: :meth:`TasksJob.result` blocks: call it from a worker; :meth:`TasksJob.progress` only
reads the end of the log and may be called from the Tk thread.
"""
from __future__ import annotations

import json
import random
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from trainer.jobs import ROOT, _env, _read_json, _tail_lines, stop_process, trainer_launcher

EXAMPLES = 3


def tasks_dir(settings) -> Path:
    """``<data dir>/tasks``: where the dialog keeps the tasks files it builds."""
    return Path(settings.home) / "tasks"


def safe_name(kb: str) -> str:
    """A knowledge base name usable in a file name (letters of any script, digits, ``-_.``).

    >>> safe_name("法律 2024/合同")
    '法律_2024_合同'
    """
    return re.sub(r"[^\w.-]+", "_", kb.strip(), flags=re.UNICODE).strip("._") or "kb"


def latest_tasks(settings, kb: str) -> Path | None:
    """The newest tasks file built for ``kb`` that has its summary (a finished build), or None."""
    folder = tasks_dir(settings)
    if not folder.is_dir():
        return None
    prefix = safe_name(kb) + "-"
    found = sorted(p for p in folder.glob(f"{prefix}*.jsonl")
                   if re.fullmatch(r"\d{8}-\d{6}", p.stem[len(prefix):]) and summary_path(p).is_file())
    return found[-1] if found else None


def summary_path(tasks_file: Path) -> Path:
    return Path(tasks_file).with_suffix(".summary.json")


def read_summary(tasks_file: Path) -> dict:
    """The ``….summary.json`` of a tasks file ({} when missing or unreadable)."""
    return _read_json(summary_path(tasks_file))


def examples(tasks_file: Path, n: int = EXAMPLES, seed: int = 0) -> list[dict]:
    """``n`` tasks of the file (random, fixed seed), each ``{"kind", "question", "answer",
    "gold", "n_passages", "split", "doc"}`` (``gold`` 0: a refusal task)."""
    rows = []
    with open(tasks_file, encoding="utf-8") as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    return [{"kind": t.get("kind", ""), "question": t.get("question", ""),
             "answer": " | ".join(t.get("answers") or []), "gold": int(t.get("gold") or 0),
             "n_passages": len(t.get("passages") or []), "split": t.get("split", ""),
             "doc": Path(str(t.get("doc", ""))).name} for t in picked]


class TasksJob:
    """One ``python -m trainer tasks --kb NAME --out FILE --json --progress-json`` subprocess.

    Attributes:
        kb: the knowledge base. out: the tasks file it writes. log: its console.
    """

    def __init__(self, proc: subprocess.Popen, kb: str, out: Path):
        self.proc, self.kb, self.out = proc, kb, Path(out)
        self.log = self.out.with_suffix(".log")

    @classmethod
    def start(cls, settings, kb: str, *, max_tasks: int = 500, out: str | Path | None = None,
              launcher: list[str] | None = None) -> TasksJob:
        """Launch the task builder for knowledge base ``kb`` (argument list, own session).

        Args:
            settings: the app settings (data dir, embedder: the child reads the same ones).
            kb: knowledge base name.
            max_tasks: most tasks (``--max``).
            out: tasks file (default ``tasks/<kb>-<UTC time>.jsonl`` in the data dir).
            launcher: replaces ``[python, "-m", "trainer"]`` (tests).
        """
        out = Path(out) if out else tasks_dir(settings) / (
            f"{safe_name(kb)}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.jsonl")
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [*(launcher or trainer_launcher()), "tasks", "--kb", kb, "--out", str(out), "--max", str(int(max_tasks)),
               "--home", str(settings.home), "--json", "--progress-json"]
        with open(out.with_suffix(".log"), "wb") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(settings), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(proc, kb, out)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def progress(self) -> tuple[int, int, str]:
        """``(done, total, message)`` of the last progress line (``total`` 0 while the chunks
        are read); (0, 0, "") before the first."""
        for line in reversed(_tail_lines(self.log, 40, max_bytes=16_000)):
            if line.startswith('{"progress"'):
                try:
                    row = json.loads(line)
                    done, total = row["progress"]
                    return int(done), int(total), str(row.get("message", ""))
                except (ValueError, KeyError, TypeError):
                    continue
        return 0, 0, ""

    def result(self, timeout: float | None = None) -> dict:
        """Wait for the builder; return ``{"path", "summary", "examples"}`` and write the
        ``….summary.json`` next to the tasks file.

        Raises:
            RuntimeError: it failed; the message is the builder's own ``error: …`` line (what
                is wrong and what to do), else the end of its log.
        """
        rc = self.proc.wait(timeout)
        lines = _tail_lines(self.log, 200, max_bytes=256_000)
        summary = None
        for line in reversed(lines):
            if line.startswith('{"tasks"'):
                try:
                    summary = json.loads(line)
                except ValueError:
                    pass
                break
        if rc != 0 or summary is None or not self.out.is_file():
            errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
            raise RuntimeError(errors[-1] if errors else "\n".join(lines[-6:]) or f"exit {rc}")
        result = {"path": str(self.out), "kb": self.kb, "summary": summary, "examples": examples(self.out)}
        tmp = summary_path(self.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(summary_path(self.out))
        return result

    def stop(self, timeout: float = 10) -> None:
        """SIGINT, wait, kill (the half-written tasks file is never used: no summary)."""
        stop_process(self.proc, timeout)
