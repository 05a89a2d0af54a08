"""Settings: defaults with no file, the YAML file, TQTS_<KEY> overrides, TQTS_HOME."""
from __future__ import annotations

import subprocess
import sys

import pytest

import settings as settings_mod
from tests.conftest import ROOT


def test_defaults_work_with_no_file(home):
    s = settings_mod.load()
    assert s.home == home
    assert not s.path.exists()
    assert s.top_k == settings_mod.DEFAULTS["top_k"]
    assert s.embedding_model == "intfloat/multilingual-e5-small"


def test_file_then_env_precedence(home, monkeypatch):
    s = settings_mod.load()
    s.update({"top_k": 9, "ui_language": "en", "temperature": 0.5})
    assert "top_k: 9" in s.path.read_text(encoding="utf-8")
    assert settings_mod.load().top_k == 9
    monkeypatch.setenv("TQTS_TOP_K", "8")
    monkeypatch.setenv("TQTS_TTS_ENABLED", "yes")
    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", "/models/我的 模型")
    s2 = settings_mod.load()
    assert (s2.top_k, s2.tts_enabled, s2.embedding_model) == (8, True, "/models/我的 模型")
    assert s2.ui_language == "en" and s2.temperature == 0.5
    assert s2.overridden_by_env("top_k") and not s2.overridden_by_env("ui_language")


def test_bad_env_value_names_the_variable(home, monkeypatch):
    monkeypatch.setenv("TQTS_TOP_K", "many")
    with pytest.raises(ValueError, match="TQTS_TOP_K='many' is not a valid int"):
        settings_mod.load()


def test_unknown_key_and_bad_file(home):
    s = settings_mod.load()
    with pytest.raises(KeyError, match="unknown setting"):
        s.set("no_such_knob", 1)
    with pytest.raises(AttributeError, match="unknown setting"):
        _ = s.no_such_knob
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        settings_mod.load()


def test_subdirs_live_under_home(home):
    s = settings_mod.load()
    for d in (s.store_dir, s.models_dir, s.runs_dir, s.history_dir):
        assert d.is_dir() and d.parent == home


def test_cli_reports_bad_env_in_one_line(home):
    env = {"TQTS_HOME": str(home), "TQTS_TOP_K": "x", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "main.py", "kb", "list"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: TQTS_TOP_K='x' is not a valid int; unset it or give e.g. 5"]
