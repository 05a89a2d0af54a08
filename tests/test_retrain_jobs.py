"""trainer/jobs.py against tests/fake_trainer.py (no torch): launch, partial lines, stop,
kill, attach after a restart, history, eval parsing."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from trainer import jobs
from trainer import jobs_report as report

FAKE = [sys.executable, str(Path(__file__).with_name("fake_trainer.py"))]


@pytest.fixture
def settings(home):
    """Plain settings on the temp data dir (no embedder needed here)."""
    import settings as settings_mod

    return settings_mod.load()


@pytest.fixture
def recipe(tmp_path) -> Path:
    p = tmp_path / "fake.yaml"
    p.write_text("name: fake\nmax_steps: 5\n", encoding="utf-8")
    return p


def _until(pred, timeout=600.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_jsonl_tail_waits_for_partial_line_and_skips_garbage(tmp_path):
    path = tmp_path / "progress.jsonl"
    tail = jobs.JsonlTail(path)
    assert tail.read_new() == []                       # file not there yet
    path.write_bytes(b'{"step": 1}\n{"step": ')
    assert tail.read_new() == [{"step": 1}]
    assert tail.read_new() == []                       # the half line is not parsed
    with open(path, "ab") as f:
        f.write(b'2}\nnot json\n[1]\n{"step": 3}\n')
    assert tail.read_new() == [{"step": 2}, {"step": 3}]
    assert tail.bad_lines == 2


def test_run_completes_and_history_has_its_numbers(settings, recipe, monkeypatch):
    monkeypatch.setenv("FAKE_SPLIT_LINES", "1")
    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.05")
    job = jobs.TrainingJob.start(settings, recipe, "tiny", max_steps=4, run_name="r1",
                                 allow_cpu=True, launcher=FAKE)
    assert job.wait(60)
    assert job.status() == "finished"
    rows = job.progress()
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert job.checkpoint() == job.run_dir / "best"
    assert "step 4/4" in job.log_tail(3)
    assert job.latest_sample()["step"] == 4
    series = report.reward_series(rows)
    assert set(series) == {"reward", "accuracy", "format"} and series["reward"][0] == [1, 2, 3, 4]
    assert report.accuracy_series(rows) == ([2, 4], [0.5, 1.0])
    [info] = report.list_runs(settings)
    assert (info.name, info.status, info.step, info.total_steps, info.best_accuracy) == \
        ("r1", "finished", 4, 4, 1.0)
    with pytest.raises(FileExistsError, match="r1"):
        jobs.TrainingJob.start(settings, recipe, "tiny", run_name="r1", launcher=FAKE)


def test_stop_sends_sigint_and_keeps_a_checkpoint(settings, recipe, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.3")
    job = jobs.TrainingJob.start(settings, recipe, "tiny", max_steps=1000, run_name="s",
                                 launcher=FAKE)
    assert _until(lambda: len(job.progress()) >= 2)
    assert job.status() == "running"
    assert job.stop(timeout=30) == "stopped"
    assert job.returncode() == 0                       # exited by itself, not killed
    ckpt = job.checkpoint()
    assert ckpt is not None and (ckpt / "adapter_config.json").exists()
    assert ckpt.name.startswith("checkpoint-")


def test_stop_waits_for_the_measured_step_and_says_stopping(settings, recipe, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.3")
    job = jobs.TrainingJob.start(settings, recipe, "tiny", max_steps=1000, run_name="w", launcher=FAKE)
    assert job.stop_timeout() == jobs.FIRST_STEP_TIMEOUT                # nothing measured yet
    assert _until(lambda: len(job.progress()) >= 2)
    assert job.stop_timeout() == pytest.approx(2 * 0.3 + jobs.SAVE_GRACE)
    jobs._signal_group(job.pid, jobs.signal.SIGINT)
    assert _until(lambda: job.info().get("status") in ("stopping", "stopped"))
    assert job.wait(60) and job.status() == "stopped" and job.resumable()
    assert job.info()["stop"]["reason"] == "user"


def test_a_vanished_trainer_never_stays_running(settings):
    """run.json says "running" but the process is gone: corrected on the spot, resumable when
    a checkpoint is there, with the reason written down."""
    for name, ckpt in (("with-ckpt", True), ("without", False)):
        run = settings.runs_dir / name
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"status": "running", "pid": 2 ** 22 + 7}))
        (run / "progress.jsonl").write_text('{"step": 3, "step_time": 100.0}\n')
        if ckpt:
            (run / "checkpoint-2").mkdir()
        job = jobs.TrainingJob.attach(run)
        assert job.status() == ("stopped" if ckpt else "failed")
        meta = json.loads((run / "run.json").read_text())
        assert meta["status"] == job.status() and meta["stop"]["reason"] == "killed" and meta["stop"]["step"] == 3
        assert ("checkpoint-2" in meta["stop"]["detail"]) is ckpt and job.resumable() is ckpt


def test_stop_kills_a_trainer_that_ignores_sigint(settings, recipe, monkeypatch):
    monkeypatch.setenv("FAKE_IGNORE_SIGINT", "1")
    job = jobs.TrainingJob.start(settings, recipe, "tiny", max_steps=1000, run_name="k",
                                 launcher=FAKE)
    assert _until(lambda: job.status() == "running")
    assert job.stop(timeout=1) == "failed"             # run.json still said running, no checkpoint
    assert job.returncode() == -9
    assert json.loads((job.run_dir / "run.json").read_text())["status"] == "failed"   # written down


def test_attach_after_restart_follows_the_running_job(settings, recipe, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_SECONDS", "0.3")
    first = jobs.TrainingJob.start(settings, recipe, "tiny", max_steps=1000, run_name="a",
                                   launcher=FAKE)
    assert _until(lambda: len(first.progress()) >= 1)
    again = jobs.TrainingJob.attach(first.run_dir)     # a new app process knows only the folder
    assert again.proc is None and again.pid == first.proc.pid
    assert again.status() == "running"
    n = len(again.progress())
    assert _until(lambda: len(again.progress()) > n)
    assert again.stop(timeout=30) == "stopped"
    first.proc.wait(5)                                 # reap it (the old "app" was its parent)
    assert jobs.TrainingJob.attach(first.run_dir).status() == "stopped"
    with pytest.raises(FileNotFoundError, match="no run.json"):
        jobs.TrainingJob.attach(settings.runs_dir / "nothing")


def test_dead_run_reads_as_failed_even_when_its_pid_was_reused(settings, tmp_path):
    run = settings.runs_dir / "crashed"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "running", "pid": 2 ** 22 + 7}))
    assert jobs.TrainingJob.attach(run).status() == "failed"
    (run / "run.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))  # pytest
    job = jobs.TrainingJob.attach(run)
    assert job.status() == "failed" and job.stop(timeout=1) == "failed"       # and no signal sent


def test_eval_job_parses_the_comparison(settings, tmp_path):
    ev = report.EvalJob.start(settings, "trained", "data.jsonl", tmp_path / "compare.json",
                            adapter="x/best", compare="base", limit=3, launcher=FAKE)
    res = ev.result(timeout=60)
    cmp = report.comparison(res, "trained", "x/best")
    assert cmp["trained"] == {"strict": 0.5, "lenient": 0.75, "format_rate": 1.0, "n": 3,
                              "strict_ci95": [0.3, 0.7], "lenient_ci95": [0.53, 0.89]}
    assert cmp["base"]["strict"] == 0.25
    bad = report.EvalJob.start(settings, "m", "d", tmp_path / "x.json", launcher=[sys.executable, "-c",
                                                                              "import sys; print('boom'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(timeout=60)


def test_comparison_reads_a_list_of_reports_in_any_order():
    base = {"model": "m", "adapter": "", "strict_accuracy": 0.1, "lenient_accuracy": 0.2, "format_rate": 0.3}
    mine = {"model": "m", "adapter": "r/best", "strict_accuracy": 0.4, "lenient_accuracy": 0.5,
            "format_rate": 0.6}
    for result in ([base, mine], {"reports": [mine, base]}):
        cmp = report.comparison(result, "m", "r/best")
        assert cmp == {"trained": {"strict": 0.4, "lenient": 0.5, "format_rate": 0.6},
                       "base": {"strict": 0.1, "lenient": 0.2, "format_rate": 0.3}}


def test_series_keep_one_point_per_step_and_eta_uses_recent_step_times():
    rows = [{"step": 1, "total_steps": 10, "reward": 0.1, "step_time": 2.0},
            {"step": 2, "total_steps": 10, "reward": 0.2, "step_time": 4.0, "eval_accuracy": 0.5},
            {"step": 2, "total_steps": 10, "reward": 0.3, "step_time": 4.0},   # repeated after a resume
            {"step": 3, "total_steps": 10, "reward": 0.4, "step_time": 3.0}]
    assert report.reward_series(rows)["reward"] == ([1, 2, 3], [0.1, 0.3, 0.4])
    assert report.accuracy_series(rows) == ([2], [0.5])
    assert report.eta_seconds(rows) == 7 * (2.0 + 4.0 + 4.0 + 3.0) / 4
    assert report.eta_seconds([]) is None


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="known recipes"):
        jobs.resolve_recipe("no-such-recipe")


def test_gpu_info_without_a_gpu_says_so(settings, monkeypatch):
    info = report.gpu_info(settings, launcher=FAKE)
    assert info["cuda"] is False
    real = report.gpu_info(settings, launcher=jobs.trainer_launcher())   # the real trainer's probe
    assert set(real) >= {"cuda", "name", "free_mb", "total_mb"} and "error" not in real
    monkeypatch.setenv("PATH", "/nonexistent")                    # no nvidia-smi: no driver
    info = report.gpu_info(settings)
    assert info["cuda"] is False and "nvidia-smi" in info["error"]


def test_grounded_recipes_are_listed_with_their_prompt_and_mix_arguments_reach_the_trainer(home):
    import settings as settings_mod

    rows = {r["name"]: r for r in jobs.list_recipes()}
    assert rows["grounded-cpu-smoke"]["grounded"] and rows["grounded-cpu-smoke"]["cpu"]
    assert rows["grounded-cpu-smoke"]["think"] is False and not rows["smoke-cpu"]["grounded"]
    assert rows["grounded-kb"]["grounded"] and not rows["grounded-kb"]["cpu"]
    cmd = jobs.train_command(Path("r.yaml"), "m", Path("/runs/x"), dataset="/t/tasks.jsonl",
                             mix_dataset="swulling/gsm8k_chinese", mix_ratio=0.3)
    assert cmd[cmd.index("--mix-dataset") + 1] == "swulling/gsm8k_chinese"
    assert cmd[cmd.index("--mix-ratio") + 1] == "0.3"
    assert "--mix-dataset" not in jobs.train_command(Path("r.yaml"), "m", Path("/runs/x"))
    assert settings_mod.load().home == home


def test_tasks_job_progress_summary_examples_and_errors(home):
    import settings as settings_mod
    from trainer import jobs_tasks as T

    s = settings_mod.load()
    job = T.TasksJob.start(s, "法律 2024", launcher=FAKE)
    assert job.out.parent == home / "tasks" and job.out.name.startswith("法律_2024-")
    result = job.result(timeout=120)
    assert job.progress() == (10, 10, "问题9有多少天？")
    assert result["summary"]["tasks"] == 10 and len(result["examples"]) == 3
    assert {e["kind"] for e in result["examples"]} == {"number"}
    assert T.latest_tasks(s, "法律 2024") == job.out and T.read_summary(job.out)["path"] == str(job.out)
    assert T.latest_tasks(s, "other") is None
    bad = T.TasksJob.start(s, "missing", launcher=FAKE)
    with pytest.raises(RuntimeError, match="no knowledge base named 'missing'; add documents first"):
        bad.result(timeout=120)
    assert T.latest_tasks(s, "missing") is None


def test_trainer_lines_keep_the_trainers_own_output():
    from trainer.jobs_report import trainer_lines

    raw = ["$ python -m trainer train --recipe r", "run dir: /runs/x", "CPU run: bf16/fp16 turned off (float32)",
           "/x/training_args.py:1541: FutureWarning: `gradient_checkpointing` is deprecated",
           "  warnings.warn(f\"`{old}` is deprecated\", FutureWarning)",
           "Loading weights:  34%|███▍      | 100/291 [00:01<00:01, 128.63it/s]",
           "step 1/2 | reward 1.000 | len 3.2 | 156.7 s/step", "stopped: /runs/x (stopped by the user after step 1)",
           "training failed: ValueError: bad"]
    assert trainer_lines(raw) == [raw[0], raw[1], raw[2], raw[6], raw[7], raw[8]]
