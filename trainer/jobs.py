"""Training jobs seen from the app: launch ``python -m trainer train`` as a subprocess, follow
its run folder, stop it, list past runs. No tkinter and no torch here: the UI process stays light.

A run folder is the trainer's (see README "trainer"): ``run.json``, ``progress.jsonl``,
``samples.jsonl``, ``checkpoint-N/``, ``best/``, ``final/``; this module adds ``train.log``
(the subprocess' stdout + stderr). :mod:`trainer.jobs_report` runs the base-vs-trained evaluation
(``compare-report.json``: the trainer's report; ``compare.json``: its numbers), computes the
curves the dialog plots and probes the GPU.

Threads: everything here may be called from any thread, but :meth:`TrainingJob.stop` blocks
for seconds (call it from a worker). :meth:`TrainingJob.poll_progress` reads only the bytes
appended since its last call, so it is cheap enough for a Tk ``after()`` poll.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_DATASET = "swulling/gsm8k_chinese"
FINAL_STATUSES = ("stopped", "finished", "failed")
#: Seconds Stop waits for a run that has not logged a step yet (model loading, the first step).
FIRST_STEP_TIMEOUT = 900.0
#: Seconds added to the measured step time for saving the checkpoint and exiting.
SAVE_GRACE = 120.0


def stop_timeout(rows: list[dict]) -> float:
    """How long Stop waits for the current step to end: twice the longest recent step (its
    ``step_time`` plus any guard ``eval_seconds``, from progress.jsonl) plus :data:`SAVE_GRACE`
    for the checkpoint; :data:`FIRST_STEP_TIMEOUT` before the first step was measured.

    >>> stop_timeout([{"step_time": 100.0}, {"step_time": 90.0, "eval_seconds": 60.0}])
    420.0
    >>> stop_timeout([])
    900.0
    """
    times = [float(r.get("step_time") or 0) + float(r.get("eval_seconds") or 0) for r in rows[-20:]]
    times = [t for t in times if t > 0]
    return 2 * max(times) + SAVE_GRACE if times else FIRST_STEP_TIMEOUT


def check_run_name(name: str) -> str:
    """A run name as given (stripped), or ValueError when it could leave ``runs/``.

    A run name is one folder name: no path separators, no ``..``, none of ``:*?"<>|`` (not
    allowed in Windows file names), no control characters, at most 100 characters.

    >>> check_run_name(" grpo-2026 ")
    'grpo-2026'
    >>> check_run_name("../../etc")
    Traceback (most recent call last):
    ValueError: run name '../../etc' must be a single folder name: no '/', '\\' or '..'; e.g. grpo-try2
    """
    name = (name or "").strip()
    if not name or "/" in name or "\\" in name or ".." in name or name in (".", "~"):
        raise ValueError(f"run name {name!r} must be a single folder name: no '/', '\\' or '..'; e.g. grpo-try2")
    if any(c in name for c in ':*?"<>|') or any(ord(c) < 32 for c in name) or len(name) > 100:
        raise ValueError(f"run name {name!r}: use letters, digits, '-', '_' or '.' (at most 100 characters)")
    return name


def trainer_launcher() -> list[str]:
    """``[python, "-m", "trainer"]`` with this interpreter."""
    return [sys.executable, "-m", "trainer"]


def _env(settings) -> dict[str, str]:
    """The child's environment: same data dir, the project importable, unbuffered output."""
    env = dict(os.environ)
    env["TQTS_HOME"] = str(settings.home)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` runs a training job: it exists, is not a zombie and (where
    /proc shows it) its arguments hold "train" and "--recipe" — a pid reused by another program
    after a crash or reboot does not count, so Stop never signals a stranger."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True                      # no /proc (macOS): trust the pid
    try:
        zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        return not zombie and b"train" in argv and b"--recipe" in argv
    except (OSError, IndexError):
        return False


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``, or {} when missing or half-written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class JsonlTail:
    """Incremental reader of a JSON-lines file that another process is appending to.

    Only complete lines (ending in ``\\n``) are parsed; a partial last line waits for the
    next call. Lines that are not JSON objects are skipped and counted in ``bad_lines``.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0

    def read_new(self) -> list[dict]:
        """Return the objects on lines completed since the last call (oldest first)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        for line in chunk[:end].splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                self.bad_lines += 1
        return rows


class TrainingJob:
    """One trainer run: its folder and, when this process launched it, its ``Popen``.

    Attributes:
        run_dir: the run folder.
        proc: the subprocess when started here, else None (attached after a restart).
    """

    def __init__(self, run_dir: str | Path, proc: subprocess.Popen | None = None):
        self.run_dir = Path(run_dir)
        self.proc = proc
        self._progress = JsonlTail(self.run_dir / "progress.jsonl")
        self._rows: list[dict] = []

    # -- launch / reopen ---------------------------------------------------------------
    @classmethod
    def start(cls, settings, recipe: str | Path, model: str, dataset: str | None = None,
              max_steps: int | None = None, epochs: float | None = None, lora: bool | None = None,
              run_name: str | None = None, allow_cpu: bool = False, resume: bool = False,
              launcher: list[str] | None = None, mix_dataset: str | None = None,
              mix_ratio: float | None = None) -> TrainingJob:
        """Launch ``python -m trainer train`` in its own session; output goes to train.log.

        Args:
            settings: the app settings; the run goes under ``settings.runs_dir``.
            recipe: a recipe YAML path or a name in trainer/recipes/ (".yaml" optional).
            model: registry name, hub id or folder of the base model.
            dataset: hub id or local file (default: the recipe's).
            max_steps / epochs: override the recipe's length (steps win when both are given).
            lora: True/False forces LoRA on/off; None keeps the recipe's choice.
            run_name: run folder name (default: UTC timestamp).
            allow_cpu: let the trainer run without CUDA (the smoke recipe).
            resume: continue from the last checkpoint of ``run_name``.
            launcher: the command before "train" (default ``[sys.executable, "-m", "trainer"]``);
                tests pass a fake trainer script here.
            mix_dataset / mix_ratio: grounded recipes: gsm8k prompts mixed into the tasks
                (``--mix-dataset`` / ``--mix-ratio``).

        Returns:
            The job; ``status()`` is "starting" until the trainer writes run.json.

        Raises:
            FileNotFoundError: the recipe does not exist.
            FileExistsError: ``run_name`` already has a run and ``resume`` is False.
            ValueError: ``run_name`` is not a single folder name (:func:`check_run_name`).
        """
        recipe_path = resolve_recipe(recipe)
        name = check_run_name(run_name) if run_name else datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = Path(settings.runs_dir) / name
        if (run_dir / "run.json").exists() and not resume:
            raise FileExistsError(f"a run named {name!r} already exists in {run_dir.parent}; "
                                  "choose another run name or resume it")
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = train_command(recipe_path, model, run_dir, dataset=dataset, max_steps=max_steps,
                            epochs=epochs, lora=lora, run_name=name, allow_cpu=allow_cpu,
                            resume=resume, launcher=launcher, mix_dataset=mix_dataset, mix_ratio=mix_ratio)
        with open(run_dir / "train.log", "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(settings), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(run_dir, proc)

    @classmethod
    def attach(cls, run_dir: str | Path) -> TrainingJob:
        """Reopen a run folder (after the app restarted); status comes from run.json + pid.

        Raises:
            FileNotFoundError: ``run_dir`` has no run.json.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "run.json").exists():
            raise FileNotFoundError(f"{run_dir} is not a training run (no run.json)")
        return cls(run_dir)

    # -- state -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.run_dir.name

    def info(self) -> dict:
        """run.json as a dict ({} before the trainer wrote it)."""
        return _read_json(self.run_dir / "run.json")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else self.info().get("pid")

    def is_alive(self) -> bool:
        """True while the trainer process runs."""
        if self.proc is not None:
            return self.proc.poll() is None
        return _pid_alive(self.pid)

    def status(self) -> str:
        """One of starting | running | stopping | stopped | finished | failed.

        A run.json still saying "running" (or "stopping") whose process is gone is corrected
        on the spot (:meth:`mark_ended`): the run was killed, crashed or the machine restarted.
        A process that exited before writing run.json counts as "failed". A final status in
        run.json counts at once, while the process still exits (its last write is that status).
        """
        st = self.info().get("status", "")
        alive = self.is_alive()
        if alive:  # run.json's final status is the real state: only the interpreter's exit is left
            return st if st in ("running", "stopping", *FINAL_STATUSES) else "starting"
        if st in FINAL_STATUSES:
            return st
        return self.mark_ended() if st else "failed"

    def resumable(self) -> bool:
        """True when the run ended without finishing and has a checkpoint-N/ to continue from."""
        return self.status() in ("stopped", "failed") and any(self.run_dir.glob("checkpoint-*"))

    def mark_ended(self, detail: str = "") -> str:
        """Correct the run.json of a trainer process that is gone without saying so: status
        "stopped" when a checkpoint-N/ is left (resumable), else "failed"; ``stop`` says why.
        Nothing is written while the process lives or when run.json already has a final status.

        Returns:
            The status afterwards.
        """
        meta = self.info()
        if self.is_alive() or not meta or meta.get("status") in FINAL_STATUSES:
            return meta.get("status") or "failed"
        ckpts = sorted(self.run_dir.glob("checkpoint-*"), key=_step_of)
        rows = self.progress()
        step = rows[-1].get("step") if rows else None
        detail = detail or "the trainer process ended without a word (killed, crashed or the machine restarted)"
        detail += f"; resumable from {ckpts[-1].name}" if ckpts else "; no checkpoint to resume from"
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        meta.update(status="stopped" if ckpts else "failed", ended=now,
                    stop={"reason": "killed", "step": step, "time": now, "detail": detail})
        if not ckpts:
            meta.setdefault("error", detail)
        _write_json(self.run_dir / "run.json", meta)
        return meta["status"]

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    # -- files -------------------------------------------------------------------------
    def poll_progress(self) -> list[dict]:
        """Rows of progress.jsonl appended since the last call (cheap; for after() polls)."""
        new = self._progress.read_new()
        self._rows.extend(new)
        return new

    def progress(self) -> list[dict]:
        """All rows of progress.jsonl so far (one dict per logged step), oldest first."""
        self.poll_progress()
        return list(self._rows)

    def latest_sample(self) -> dict | None:
        """The last complete line of samples.jsonl (step, prompt, completion, reward)."""
        lines = _tail_lines(self.run_dir / "samples.jsonl", 5, max_bytes=256_000)
        for line in reversed(lines):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                return row
        return None

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of train.log (progress-bar carriage returns folded)."""
        return "\n".join(_tail_lines(self.run_dir / "train.log", n))

    def checkpoint(self) -> Path | None:
        """The folder to adopt: ``best/``, else ``final/``, else the newest ``checkpoint-N/``."""
        for sub in ("best", "final"):
            if (self.run_dir / sub).is_dir():
                return self.run_dir / sub
        ckpts = sorted(self.run_dir.glob("checkpoint-*"), key=_step_of)
        return ckpts[-1] if ckpts else None

    # -- control -----------------------------------------------------------------------
    def stop_timeout(self) -> float:
        """Seconds :meth:`stop` waits by default (:func:`stop_timeout` of this run's progress)."""
        return stop_timeout(self.progress())

    def stop(self, timeout: float | None = None) -> str:
        """Ask the trainer to stop (SIGINT: it finishes the step and saves a checkpoint), wait,
        then kill; a killed run's run.json is corrected (:meth:`mark_ended`).

        Blocks up to ``timeout`` seconds (default :meth:`stop_timeout`, from the measured step
        time; +5 after the kill): call it off the UI thread.

        Returns:
            The status afterwards (normally "stopped").
        """
        pid = self.pid
        if not self.is_alive() or not pid:
            return self.status()
        timeout = self.stop_timeout() if timeout is None else timeout
        _signal_group(pid, signal.SIGINT)
        if not self._wait(timeout):
            _signal_group(pid, signal.SIGKILL)
            self._wait(5)
            return self.mark_ended(f"killed: the step did not end within {timeout:.0f} s of Stop")
        return self.status()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the trainer to exit; True when it has."""
        return self._wait(timeout)

    def _wait(self, timeout: float | None) -> bool:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while _pid_alive(self.pid):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (its own session), else to ``pid``."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a child that leads its own process group: SIGINT, wait ``timeout`` s, then SIGKILL
    (and wait 5 s more). Returns at once when it has already exited."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _tail_lines(path: Path, n: int, max_bytes: int = 64_000) -> list[str]:
    """Last ``n`` non-empty lines of a text file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = [seg.rsplit("\r", 1)[-1] for seg in data.replace("\r\n", "\n").split("\n")]
    return [ln for ln in lines if ln.strip()][-n:]


def resolve_recipe(recipe: str | Path) -> Path:
    """A recipe path: an existing file, or a name in trainer/recipes/ (".yaml" optional).

    Raises:
        FileNotFoundError: no such recipe; the message lists the known ones.
    """
    p = Path(recipe)
    if p.is_file():
        return p.resolve()
    for cand in (RECIPES_DIR / p.name, RECIPES_DIR / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(r.stem for r in RECIPES_DIR.glob("*.yaml"))) or "none"
    raise FileNotFoundError(f"recipe {str(recipe)!r} not found; known recipes: {known}")


def train_command(recipe: Path, model: str, run_dir: Path, *, dataset=None, max_steps=None,
                  epochs=None, lora=None, run_name=None, allow_cpu=False, resume=False,
                  launcher=None, mix_dataset=None, mix_ratio=None) -> list[str]:
    """The argument list of ``python -m trainer train`` (never a shell string)."""
    cmd = [*(launcher or trainer_launcher()), "train", "--recipe", str(recipe),
           "--model", str(model), "--output", str(run_dir)]
    if dataset:
        local = Path(dataset).expanduser()
        cmd += ["--dataset", str(local.resolve()) if local.exists() else str(dataset)]
    if run_name:
        cmd += ["--run-name", run_name]
    if max_steps:
        cmd += ["--max-steps", str(int(max_steps))]
    elif epochs:
        cmd += ["--epochs", str(epochs)]
    if lora is not None:
        cmd.append("--lora" if lora else "--no-lora")
    if mix_dataset:
        local = Path(mix_dataset).expanduser()
        cmd += ["--mix-dataset", str(local.resolve()) if local.exists() else str(mix_dataset)]
        if mix_ratio is not None:
            cmd += ["--mix-ratio", str(float(mix_ratio))]
    if resume:
        cmd.append("--resume")
    if allow_cpu:
        cmd.append("--allow-cpu")
    return cmd


def list_recipes() -> list[dict]:
    """The bundled recipes that validate (:func:`trainer.recipes.load`), each as
    ``{name, path, description, dataset, lora, max_steps (-1: by epochs), epochs, cpu, grounded,
    think, max_passages, max_completion_length}``; "cpu" is True for recipes meant to run without
    CUDA (``use_cpu`` or a name ending in "-cpu"); "grounded" for those that train on a tasks
    file (:func:`needs_tasks_file`)."""
    from trainer import recipes as R

    out = []
    for path in sorted(R.RECIPES_DIR.glob("*.yaml")):
        try:
            r = R.load(path, trl_check=False)      # no TRL / torch in the app process
        except (ValueError, OSError):
            continue
        g = r.grpo
        out.append({"name": r.name, "path": str(path), "description": r.description,
                    "dataset": r.dataset, "lora": r.lora.enabled, "max_steps": g.get("max_steps", -1),
                    "epochs": g.get("num_train_epochs"),
                    "cpu": bool(g.get("use_cpu")) or r.name.endswith("-cpu"), "grounded": needs_tasks_file(r),
                    "think": bool(r.think), "max_passages": r.max_passages,
                    "max_completion_length": g.get("max_completion_length")})
    return out


def needs_tasks_file(recipe) -> bool:
    """True for a grounded recipe (stages or grounded rewards): it trains on a tasks file from
    ``python -m trainer tasks``, not on gsm8k."""
    from trainer.grounded import GROUNDED_REWARDS

    return bool(recipe.stages) or bool(set(recipe.rewards) & set(GROUNDED_REWARDS))
