"""ModelRegistry and the `models` CLI: import, use, register_trained, resolve, pull offline."""
from __future__ import annotations

import json
import shutil

import pytest

import main
from models.backend import BackendError
from models.registry import DEFAULT_MODEL, ModelRegistry


@pytest.fixture
def adapter_dir(tiny_qwen_dir, tmp_path):
    """A LoRA adapter folder as the trainer writes it (runs/<run>/final)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path / "runs" / "run1" / "final"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen_dir),
                   LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(out)
    return out


def test_default_model_listed_and_nothing_local(settings):
    reg = ModelRegistry(settings)
    assert [e.name for e in reg.list()] == [DEFAULT_MODEL]
    assert reg.active().name == DEFAULT_MODEL and reg.resolve() == (DEFAULT_MODEL, "")
    assert reg.available() is False  # not in the (offline) Hugging Face cache


def test_import_folder_is_referenced_and_adopted(settings, tiny_qwen_dir):
    reg = ModelRegistry(settings)
    e = reg.import_path(tiny_qwen_dir, name="tiny 模型")
    assert e.name == "tiny-模型" and e.kind == "imported" and e.path == str(tiny_qwen_dir.resolve())
    assert settings.model == "tiny-模型" and reg.available()       # first local model becomes active
    assert "tiny-模型" in (settings.home / "settings.yaml").read_text(encoding="utf-8")
    stored = json.loads((settings.models_dir / "registry.json").read_text(encoding="utf-8"))
    assert [m["name"] for m in stored["models"]] == ["tiny-模型"]
    with pytest.raises(BackendError, match="pick another --name"):
        reg.import_path(tiny_qwen_dir, name="tiny 模型")
    assert len(ModelRegistry(settings).list()) == 2                  # nothing duplicated


def test_import_rejects_non_models_with_one_message(settings, tiny_qwen_dir, tmp_path):
    reg = ModelRegistry(settings)
    with pytest.raises(BackendError, match="does not exist"):
        reg.import_path(tmp_path / "missing")
    with pytest.raises(BackendError, match="config.json"):
        reg.import_path(tmp_path)
    binonly = tmp_path / "bin"
    binonly.mkdir()
    shutil.copy(tiny_qwen_dir / "config.json", binonly)
    (binonly / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(BackendError, match="safetensors"):
        reg.import_path(binonly)
    with pytest.raises(BackendError, match="neither"):
        reg.import_path(tiny_qwen_dir / "config.json")


def test_register_trained_adapter_and_use(settings, tiny_qwen_dir, adapter_dir):
    reg = ModelRegistry(settings)
    reg.import_path(tiny_qwen_dir, name="tiny")
    e = reg.register_trained(adapter_dir, base="tiny", metrics={"accuracy": 0.5})
    assert e.name == "run1-final" and e.kind == "trained" and e.adapter == str(adapter_dir)
    assert e.path == str(tiny_qwen_dir.resolve()) and e.metrics == {"accuracy": 0.5}
    assert reg.register_trained(adapter_dir, base="tiny").name == "run1-final-2"  # unique names
    reg.use("run1-final")
    assert settings.model == "run1-final" and reg.resolve() == (str(tiny_qwen_dir.resolve()), str(adapter_dir))
    backend = reg.load_backend()
    assert backend.adapter == str(adapter_dir) and backend.name == "run1-final"
    # an adapter folder given directly resolves to its base (adapter_config.json) + itself
    assert reg.resolve(str(adapter_dir))[1] == str(adapter_dir.resolve())


def test_register_trained_full_folder_and_use_with_adapter(settings, tiny_qwen_dir, adapter_dir, tmp_path):
    reg = ModelRegistry(settings)
    e = reg.register_trained(tiny_qwen_dir, name="full")
    assert e.path == str(tiny_qwen_dir.resolve()) and e.adapter == ""
    used = reg.use("full", adapter=str(adapter_dir))
    assert used.adapter == str(adapter_dir.resolve()) and settings.adapter == str(adapter_dir.resolve())
    with pytest.raises(BackendError, match="adapter_config.json"):
        reg.use("full", adapter=str(tmp_path))
    with pytest.raises(KeyError, match="registered"):
        reg.use("no-such-model")


def test_pull_offline_says_what_to_do(settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError) as err:
        ModelRegistry(settings).pull("Qwen/Qwen2.5-0.5B-Instruct")
    assert "Hugging Face" in str(err.value) and "models import" in str(err.value)
    assert ModelRegistry(settings).list()[-1].kind == "base"         # nothing registered


def test_pull_modelscope_missing_package_message(settings, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails as if not installed
    with pytest.raises(BackendError, match="pip install modelscope"):
        ModelRegistry(settings).pull("qwen/Qwen2.5-0.5B-Instruct", source="modelscope")


def test_unknown_backend_and_gguf_not_imported(settings, tmp_path):
    reg = ModelRegistry(settings)
    with pytest.raises(BackendError, match="models import"):
        reg.resolve(str(tmp_path / "x.gguf"))
    settings.set("backend", "nope", persist=False)
    with pytest.raises(BackendError, match="unknown"):
        reg.load_backend()


# -- CLI -------------------------------------------------------------------------------------
def test_cli_import_use_list(settings, tiny_qwen_dir, capsys):
    assert main.main(["models", "import", str(tiny_qwen_dir), "--name", "tiny"]) == 0
    assert "now the answering model" in capsys.readouterr().out
    assert main.main(["models", "use", DEFAULT_MODEL]) == 0
    assert main.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"* {DEFAULT_MODEL}" in out and "  tiny " in out and "not on this machine" in out
    assert main.main(["models", "use", "nope"]) == 1
    assert "no model named 'nope'" in capsys.readouterr().err


def test_cli_pull_offline_exit_code(settings, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main.main(["models", "pull", "Qwen/Qwen2.5-0.5B-Instruct"]) == 1
    assert "models import" in capsys.readouterr().err


def test_cli_export_without_server_prints_create_command(settings, tiny_qwen_dir, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.set("ollama_host", f"http://127.0.0.1:{port}")
    assert main.main(["models", "export-ollama", str(tiny_qwen_dir), "--out", str(tmp_path / "ex")]) == 0
    out = capsys.readouterr().out
    assert "ollama create model -f Modelfile" in out and (tmp_path / "ex" / "model.safetensors").is_file()
