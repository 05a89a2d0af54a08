"""The Retrain dialog's "Use this model" (real Tk under Xvfb, real ModelRegistry) on a GGUF base:
adopting a trained LoRA writes its GGUF LoRA so `backend: auto` serves it on llama.cpp; an
adapter llama.cpp cannot run is adopted all the same, on transformers, and the message says so."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.test_models_lora_gguf import base, make_adapter  # noqa: F401  (module fixture)
from tests.test_retrain_dialog import FAKE, pump

pytestmark = pytest.mark.gui
pytest.importorskip("xllamacpp", reason="xllamacpp is in requirements.txt; pip install -r requirements.txt")


def finished_run(run_dir):
    """A finished run folder as the trainer leaves it (run.json; best/ written by the caller)."""
    from trainer.jobs import TrainingJob

    (run_dir / "run.json").write_text(json.dumps({"status": "finished", "model": "tiny", "args": {},
                                                  "recipe_fields": {}}), encoding="utf-8")
    return TrainingJob.attach(run_dir)


@pytest.fixture
def dialog(display, home, base):  # noqa: F811
    import tkinter as tk

    import settings as settings_mod
    from app.retrain import open_retrain_dialog
    from models.registry import ModelRegistry

    root = tk.Tk()
    root.withdraw()
    registry = ModelRegistry(settings_mod.load())
    registry.import_path(base, name="tiny")
    services = SimpleNamespace(settings=registry.settings, registry=registry, answers=None, kb=None)
    dlg = open_retrain_dialog(root, services, launcher=FAKE)
    pump(root, lambda: str(dlg.start_button["state"]) == "normal")
    yield root, dlg, registry
    root.destroy()


def adopt(root, dlg, ckpt):
    dlg.job = finished_run(ckpt.parent)
    assert dlg.job.checkpoint() == ckpt
    dlg.adopt()
    pump(root, lambda: dlg.adopted is not None and not dlg._busy, timeout=120)


def test_adopt_writes_the_gguf_lora_and_auto_serves_it_on_llamacpp(dialog, base, tmp_path):  # noqa: F811
    from models.registry import pick_chat_backend

    root, dlg, registry = dialog
    ckpt = make_adapter(base, tmp_path / "run1" / "best", target_modules=["q_proj", "v_proj"])
    adopt(root, dlg, ckpt)
    assert registry.active().name == "grpo-run1" and registry.active().adapter == str(ckpt)
    assert (ckpt / "adapter_model.gguf").is_file()
    assert pick_chat_backend(registry.settings, *registry.resolve(None)) == "llamacpp"
    assert "Now answering with grpo-run1." in dlg.message or "已启用 grpo-run1：" in dlg.message


def test_an_adapter_llamacpp_cannot_run_is_adopted_on_transformers(dialog, base, tmp_path):  # noqa: F811
    root, dlg, registry = dialog
    ckpt = make_adapter(base, tmp_path / "run2" / "best", target_modules=["q_proj", "embed_tokens"])
    adopt(root, dlg, ckpt)
    assert registry.active().name == "grpo-run2"
    assert not (ckpt / "adapter_model.gguf").exists()
    assert "transformers" in dlg.message and "embed_tokens" in dlg.message
