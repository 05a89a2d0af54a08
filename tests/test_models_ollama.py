"""OllamaBackend and export-to-Ollama against a fake Ollama server.

No Ollama server is installable in this sandbox (no network to fetch it, no binary), so these
tests start a small HTTP server on 127.0.0.1 (http.server in a thread) that speaks the parts of
the Ollama REST API the ``ollama`` client uses here: POST /api/chat (streamed NDJSON),
POST /api/show, POST /api/blobs/<digest>, POST /api/create.
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models.backend import BackendError, GenerationSettings
from models.ollama_backend import OllamaBackend, export_model, modelfile, ollama_name

DELTAS = ["<think>看资料", "</think><ans", "wer>民主集中制 [1]", "</answer>"]


class FakeOllama(BaseHTTPRequestHandler):
    models = {"qwen2.5:0.5b"}
    requests: list = []

    def log_message(self, *a):  # keep pytest output quiet
        pass

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/api/blobs/"):
            self.requests.append(("blob", self.path, len(raw)))
            return self._json(201, {})
        body = json.loads(raw or b"{}")
        self.requests.append((self.path, body))
        if self.path == "/api/create":
            self.models.add(body["model"])
            return self._json(200, {"status": "success"})
        if body.get("model") not in self.models:
            return self._json(404, {"error": f"model '{body.get('model')}' not found"})
        if self.path == "/api/show":
            return self._json(200, {"model_info": {"qwen2.context_length": 32768}, "template": "{{ .Prompt }}"})
        if self.path == "/api/chat":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            for d in DELTAS:
                line = {"model": body["model"], "message": {"role": "assistant", "content": d}, "done": False}
                self.wfile.write((json.dumps(line) + "\n").encode())
                self.wfile.flush()
            end = {"model": body["model"], "message": {"role": "assistant", "content": ""}, "done": True,
                   "eval_count": 9}
            self.wfile.write((json.dumps(end) + "\n").encode())
            return None
        return self._json(404, {"error": "unknown endpoint"})


@pytest.fixture
def server():
    FakeOllama.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens


def test_stream_show_and_options(settings, server):
    settings.set("ollama_host", server, persist=False)
    b = OllamaBackend(settings)
    b.check()
    assert b.context_tokens == settings.context_tokens == 4096  # min(32768, setting)
    gen = GenerationSettings(max_new_tokens=33, temperature=0.0)
    assert list(b.stream([{"role": "user", "content": "问"}], gen=gen)) == DELTAS
    assert b.last_completion_tokens == 9
    path, body = FakeOllama.requests[-1]
    assert path == "/api/chat" and body["stream"] is True
    assert body["options"]["num_predict"] == 33 and body["options"]["temperature"] == 0.0


def test_missing_model_says_ollama_pull(settings, server):
    settings.set("ollama_host", server, persist=False)
    b = OllamaBackend(settings, model="nope:1b")
    with pytest.raises(BackendError, match="ollama pull nope:1b"):
        list(b.stream([{"role": "user", "content": "hi"}]))
    with pytest.raises(BackendError, match="ollama pull nope:1b"):
        b.check()


def test_server_down_says_ollama_serve(settings):
    settings.set("ollama_host", free_port_url(), persist=False)
    with pytest.raises(BackendError, match="ollama serve"):
        list(OllamaBackend(settings).stream([{"role": "user", "content": "hi"}]))


def test_answer_service_over_ollama(settings, server):
    from models.answer import AnswerService
    from tests.test_answer_service import FakeKB, hits

    settings.update({"backend": "ollama", "ollama_host": server})
    r = AnswerService(settings, FakeKB(hits())).answer("国家机构实行什么原则？")
    assert r.model == "ollama:qwen2.5:0.5b" and r.answer == "民主集中制 [1]" and r.cited == [1]
    assert r.reasoning == "看资料" and r.timings["tokens"] == 9


def test_export_merges_adapter_and_creates_model(settings, server, tiny_qwen_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen_dir),
                   LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    settings.set("ollama_host", server, persist=False)
    name, created = export_model(str(tiny_qwen_dir), str(adapter), tmp_path / "out", settings, name="My 模型")
    assert (name, created) == ("my", True)
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        assert not any("lora" in k for k in f.keys())  # merged, plain weights
    assert 'PARAMETER stop "<|im_end|>"' in (tmp_path / "out" / "Modelfile").read_text()
    create = [b for p, *b in FakeOllama.requests if p == "/api/create"][0][0]
    assert create["model"] == "my" and "model.safetensors" in create["files"] and "<|im_start|>" in create["template"]
    settings.set("ollama_host", free_port_url(), persist=False)
    assert export_model(str(tiny_qwen_dir), "", tmp_path / "out2", settings, name="x")[1] is False


def test_names_and_modelfile():
    assert ollama_name("Qwen2.5 Coder/0.5B") == "qwen2.5-coder-0.5b"
    assert modelfile().startswith("FROM .\nTEMPLATE")


def test_registry_available_asks_the_ollama_server(settings, server):
    from models.registry import ModelRegistry

    settings.update({"backend": "ollama", "ollama_host": server})
    reg = ModelRegistry(settings)
    assert reg.available() is True
    settings.set("ollama_model", "missing:1b")
    assert reg.available() is False
    settings.set("ollama_host", free_port_url())
    assert reg.available() is False
