"""Every CLI subcommand with a broken embedder and a broken answering model: one line each,
never a traceback (a new user offline, a half-copied model folder)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

COMMANDS = [
    ["ingest", "{doc}"], ["ingest", "{folder}"], ["search", "hello"],
    ["kb", "list"], ["kb", "docs"], ["kb", "remove", "note.txt"], ["kb", "check"], ["kb", "repair"],
    ["ask", "what is in the note?"], ["ask", "--json", "hello"], ["models", "list"],
    ["models", "import", "{broken}"], ["models", "pull", "nobody/nothing"], ["models", "use", "nothing"],
    ["models", "export-ollama", "nothing"], ["voice", "pull", "zh"],
]


@pytest.fixture
def broken_env(home, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "note.txt").write_text("A note about apples. 关于苹果的笔记。", encoding="utf-8")
    env = {**os.environ, "TQTS_HOME": str(home), "TQTS_EMBEDDING_MODEL": str(broken), "TQTS_MODEL": str(broken),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    env.pop("TQTS_DEBUG", None)
    return env, {"doc": str(folder / "note.txt"), "folder": str(folder), "broken": str(broken)}


def _run(env, argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT, stdin=subprocess.DEVNULL)


def test_no_traceback_with_a_broken_embedder_and_model(broken_env):
    env, paths = broken_env
    for cmd in COMMANDS:
        argv = [a.format(**paths) for a in cmd]
        r = _run(env, argv)
        both = r.stdout + r.stderr
        assert "Traceback" not in both, (argv, both[-3000:])
        assert r.returncode in (0, 1, 2), (argv, r.returncode, both[-2000:])
        if argv[0] == "ingest":                       # one line per file, plus the summary
            assert "! failed" in r.stdout + r.stderr and "cannot load the embedding model" in both
            assert "1 file(s): 0 added" in r.stdout and "1 failed" in r.stdout
        if argv[0] == "search":
            assert "error: cannot load the embedding model" in r.stderr


def test_no_traceback_when_only_the_answering_model_is_broken(broken_env, tiny_embedder_dir):
    env, paths = broken_env
    env = {**env, "TQTS_EMBEDDING_MODEL": str(tiny_embedder_dir)}
    assert _run(env, ["ingest", paths["doc"]]).returncode == 0
    for argv in (["ask", "what is in the note?"], ["ask", "--json", "apples"], ["search", "apples"]):
        r = _run(env, argv)
        assert "Traceback" not in r.stdout + r.stderr, (argv, (r.stdout + r.stderr)[-3000:])
        if argv[0] == "ask":
            assert "broken-model" in r.stdout + r.stderr and r.returncode != 0     # the model is named
    assert r.returncode == 0 and "note.txt" in r.stdout                 # search needs no answering model


def test_unexpected_errors_are_one_line(monkeypatch, capsys, home):
    import main
    from kb import cli

    def bug(args, settings):
        raise RuntimeError("something nobody planned for\nsecond line")

    monkeypatch.setattr(cli, "cmd_kb_list", bug)
    assert main.main(["kb", "list"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: something nobody planned for (RuntimeError; run again with "
                                        "TQTS_DEBUG=1 for details to report)"]
    monkeypatch.setenv("TQTS_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main.main(["kb", "list"])
