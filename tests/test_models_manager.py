"""The registry functions behind the model manager: inventory (kind, size, active), delete,
switch, pull with byte progress and cancel (a stand-in for the hub's downloader), the offline
pull's reason, and the embedder checks of the first-run panel."""
from __future__ import annotations

import shutil
import threading

import pytest

from models.backend import BackendError
from models.registry import DEFAULT_MODEL, ModelRegistry, PullError


def fake_hub(monkeypatch, source_dir, calls=None):
    """Replace ``huggingface_hub.snapshot_download`` by a copy of ``source_dir`` that reports its
    bytes through ``tqdm_class`` the way the hub does (one bar in bytes, updated per file)."""
    import huggingface_hub

    def snapshot_download(repo_id, local_dir, allow_patterns=None, tqdm_class=None, **kw):
        files = sorted(p for p in source_dir.iterdir() if p.is_file())
        bar = tqdm_class(total=sum(p.stat().st_size for p in files), unit="B", desc="Reconstructing")
        local_dir.mkdir(parents=True, exist_ok=True)
        for p in files:
            shutil.copy2(p, local_dir / p.name)
            bar.update(p.stat().st_size)
        if calls is not None:
            calls.append(repo_id)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


def test_inventory_kinds_sizes_active(settings, tiny_qwen_dir, monkeypatch):
    reg = ModelRegistry(settings)
    reg.import_path(tiny_qwen_dir, name="tiny")        # referenced folder, adopted (default not here)
    fake_hub(monkeypatch, tiny_qwen_dir)
    reg.pull("org/pulled-model")
    rows = {r.name: r for r in reg.inventory()}
    assert set(rows) == {DEFAULT_MODEL, "tiny", "pulled-model"}
    want = sum(p.stat().st_size for p in tiny_qwen_dir.iterdir() if p.is_file())
    assert rows["tiny"].kind == "hf" and rows["tiny"].size_bytes == want and rows["tiny"].active
    assert rows["pulled-model"].size_bytes == want and rows["pulled-model"].owned
    assert rows[DEFAULT_MODEL].size_bytes is None and not rows[DEFAULT_MODEL].deletable
    assert not rows["tiny"].deletable and rows["pulled-model"].deletable
    settings.update({"backend": "ollama", "ollama_model": "qwen2.5:0.5b"})
    rows = reg.inventory()
    assert (rows[0].name, rows[0].kind, rows[0].active) == ("qwen2.5:0.5b", "ollama", True)
    assert not any(r.active for r in rows[1:])


def test_delete_owned_files_go_referenced_folder_stays(settings, tiny_qwen_dir, monkeypatch):
    reg = ModelRegistry(settings)
    reg.import_path(tiny_qwen_dir, name="tiny")
    fake_hub(monkeypatch, tiny_qwen_dir)
    pulled = reg.pull("org/other")
    with pytest.raises(BackendError, match="answering model"):
        reg.delete("tiny")                                  # active
    with pytest.raises(BackendError, match="built-in"):
        reg.delete(DEFAULT_MODEL)
    reg.delete("other")
    assert not (settings.models_dir / "other").exists() and "other" not in [e.name for e in reg.list()]
    reg.switch_to(DEFAULT_MODEL)
    reg.delete("tiny")                                      # no longer active: unregistered only
    assert (tiny_qwen_dir / "config.json").is_file()
    assert [e.name for e in reg.list()] == [DEFAULT_MODEL]
    assert pulled.path == str(settings.models_dir / "other")


def test_switch_from_ollama_back_to_a_folder(settings, tiny_qwen_dir):
    from settings import DEFAULTS

    reg = ModelRegistry(settings)
    reg.import_path(tiny_qwen_dir, name="tiny")
    settings.update({"backend": "ollama"})
    assert reg.switch_to(settings.ollama_model) is None and settings.backend == "ollama"
    assert reg.switch_to("tiny").name == "tiny"
    assert settings.backend == DEFAULTS["backend"] and settings.model == "tiny"


def test_pull_reports_bytes_and_cancel_removes_the_folder(settings, tiny_qwen_dir, monkeypatch):
    fake_hub(monkeypatch, tiny_qwen_dir)
    reg, cancel, seen = ModelRegistry(settings), threading.Event(), []

    def progress(done, total, _msg):
        seen.append((done, total))
        if done and done < total:
            cancel.set()                                    # the user presses Cancel mid-download

    with pytest.raises(PullError) as err:
        reg.pull("org/big", on_progress=progress, cancel=cancel)
    assert err.value.reason == "cancelled"
    assert not (settings.models_dir / "big").exists() and "big" not in [e.name for e in reg.list()]
    total = sum(p.stat().st_size for p in tiny_qwen_dir.iterdir() if p.is_file())
    assert any(t == total and 0 < d < total for d, t in seen)

    seen.clear()
    entry = reg.pull("org/big", on_progress=lambda d, t, m: seen.append((d, t)))
    assert entry.kind == "pulled" and (settings.models_dir / "big" / "config.json").is_file()
    assert (total, total) in seen


def test_pull_offline_has_a_reason(settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PullError) as err:
        ModelRegistry(settings).pull(DEFAULT_MODEL)
    assert err.value.reason == "offline"
    assert not (settings.models_dir / "Qwen2.5-0.5B-Instruct").exists()


def test_pull_modelscope_missing_package_reason(settings, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "modelscope", None)
    with pytest.raises(PullError) as err:
        ModelRegistry(settings).pull("qwen/Qwen2.5-0.5B-Instruct", source="modelscope")
    assert err.value.reason == "missing_package"


def test_embedder_check_use_and_pull(settings, tiny_embedder_dir, tmp_path, monkeypatch):
    reg = ModelRegistry(settings)
    assert reg.embedder_available()                         # the tiny embedder folder (fixture)
    settings.update({"embedding_model": "intfloat/multilingual-e5-small"})
    assert not reg.embedder_available()                     # not in the (empty) hub cache
    with pytest.raises(BackendError, match="no embedding model"):
        reg.use_embedder(tmp_path)
    assert reg.use_embedder(tiny_embedder_dir) == tiny_embedder_dir.resolve()
    assert reg.embedder_available()
    fake_hub(monkeypatch, tiny_embedder_dir)
    dest = reg.pull_embedder("intfloat/multilingual-e5-small")
    assert settings.embedding_model == str(dest) and (dest / "config.json").is_file()
    assert [e.name for e in reg.list()] == [DEFAULT_MODEL]  # an embedder is not an answering model
