"""Run names (trainer --run-name, the Retrain dialog's field) stay one folder under runs/."""
from __future__ import annotations

from argparse import Namespace

import pytest

from trainer.jobs import TrainingJob, check_run_name

BAD = ["../..", "../../etc", "a/b", "a\\b", "..", "x..y", "/abs", "C:evil", "", "  ", "a\x00b", "x" * 101]


@pytest.mark.parametrize("name", BAD)
def test_bad_run_names_are_refused_with_what_to_do(name):
    with pytest.raises(ValueError) as e:
        check_run_name(name)
    assert "run name" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["grpo-try2", "运行 1", "v1.2_final"])
def test_good_run_names_pass(name):
    assert check_run_name(f" {name} ") == name


def test_job_start_and_trainer_cli_refuse_before_creating_anything(settings, tmp_path):
    from trainer.train import TrainError, run_dir_for

    before = set(settings.home.rglob("*"))
    with pytest.raises(ValueError, match="single folder name"):
        TrainingJob.start(settings, "smoke-cpu", "m", run_name="../../escaped", launcher=["false"])
    with pytest.raises(TrainError, match="single folder name"):
        run_dir_for(Namespace(output=None, run_name="../outside", resume=False), settings)
    assert set(settings.home.rglob("*")) - before <= {settings.runs_dir}    # runs/ at most, nothing escaped
    assert not (settings.home.parent / "escaped").exists()
    assert run_dir_for(Namespace(output=None, run_name="ok-name", resume=False), settings) == settings.runs_dir / "ok-name"
