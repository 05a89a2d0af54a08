"""One-time export of a sentence-transformers model to int8 ONNX (the ``onnx``/``openvino``
embedding backends of :mod:`kb.onnx_embedder`) or to float32 ONNX (``onnx-fp32``), run in a
child process.

    python -m kb.onnx_export TRANSFORMER_FOLDER OUT_DIR [--float32]

Steps: ``torch.onnx.export`` of the Hugging Face model (float32, inputs the tokenizer's
``model_input_names``, output ``last_hidden_state``), then ONNX Runtime's dynamic quantization
(``onnxruntime.quantization.quantize_dynamic``: int8 weights per output channel, activations
quantized per batch at run time, no calibration data) of the MatMuls with a weight except the
feed-forward down-projections (:func:`down_projections`), then the word-embedding table stored
as int8 rows with one float scale per row (see :func:`int8_rows`).
The tokenizer the float32 model uses is saved next to it (``tokenizer.json`` +
``tokenizer_meta.json``) so the runtime needs only the ``tokenizers`` library.

Measured choice (multilingual-e5-small on the 35 cross-lingual questions, README "Latest numbers
on a CPU without bf16"): all MatMuls + ORT's per-tensor Gather (v1) lost cross-lingual retrieval
(MRR@10 0.290 vs 0.348 float32, median cosine 0.9963); the word-embedding table was not the cause
(per row: 0.9964); keeping the 12 down-projections in float32 gave median cosine 0.9991 and MRR@10
0.348. Runs in its own process so the app never holds torch (~200 MiB RSS) for a
backend that does not use it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ONNX_FILE = "model_int8.onnx"
FP32_FILE = "model_fp32.onnx"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_META = "tokenizer_meta.json"
#: What the export does; part of the cache key, so exports of an older recipe are not reused.
RECIPE = ("int8-v2: MatMul weights int8 per channel (ORT dynamic) except the feed-forward down-projections "
          "(float32), word embeddings int8 per row")
#: The float32 export (``embedding_backend: onnx-fp32``): the torch graph as exported, no quantization.
RECIPE_FP32 = "fp32-v1: torch.onnx.export float32, opset 17, no quantization"
#: precision -> (recipe, file name in the cache folder).
PRECISIONS = {"int8": (RECIPE, ONNX_FILE), "float32": (RECIPE_FP32, FP32_FILE)}


class ExportError(RuntimeError):
    """The model cannot be exported or quantized; the message says why."""


def export_in_child(transformer: Path, out: Path, timeout_s: float = 1800, precision: str = "int8") -> Path:
    """Run :func:`export_int8` (precision "int8") or :func:`export_fp32` ("float32") in a child
    Python process (``python -m kb.onnx_export``).

    Returns:
        ``out / ONNX_FILE`` (int8) or ``out / FP32_FILE`` (float32).

    Raises:
        ExportError: the child failed (its last stderr line in the message) or timed out.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    file = PRECISIONS[precision][1]
    flag = ["--float32"] if precision == "float32" else []
    try:
        r = subprocess.run([sys.executable, "-m", "kb.onnx_export", str(transformer), str(out), *flag],
                           capture_output=True, text=True, env=env, timeout=timeout_s, cwd=root)
    except subprocess.TimeoutExpired:
        raise ExportError(f"exporting {transformer} to ONNX took over {timeout_s:.0f} s") from None
    if r.returncode != 0 or not (out / file).exists():
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"cannot export {transformer} to ONNX ({last})")
    return out / file


def export_int8(transformer: Path, out: Path) -> Path:
    """:func:`export` with int8 weights (:data:`RECIPE`): ``out / ONNX_FILE``."""
    return export(transformer, out, quantized=True)


def export_fp32(transformer: Path, out: Path) -> Path:
    """:func:`export` without quantization (:data:`RECIPE_FP32`): ``out / FP32_FILE``."""
    return export(transformer, out, quantized=False)


def export(transformer: Path, out: Path, quantized: bool = True) -> Path:
    """Export the Hugging Face model in ``transformer`` to ONNX (int8 when ``quantized``, else
    float32) plus its tokenizer.

    Writes ``out/tokenizer.json``, ``out/tokenizer_meta.json`` ({"pad_id", "pad_token",
    "max_length", "input_names"}) and, last, ``out/model_int8.onnx`` or ``out/model_fp32.onnx``
    (atomic rename; the intermediate float32 file is deleted after). Inputs: ``input_names`` (int64, (batch, seq)); output
    ``last_hidden_state`` (float32, (batch, seq, hidden)).

    Raises:
        ExportError: the model cannot be exported.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(transformer))
    model = AutoModel.from_pretrained(str(transformer), dtype=torch.float32).eval()
    names = [n for n in tok.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    enc = tok(["passage: warm-up", "query: 预热"], padding=True, return_tensors="pt")
    save_tokenizer(tok, names, out)

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *args):
            return self.m(**dict(zip(names, args, strict=True))).last_hidden_state

    final = out / (ONNX_FILE if quantized else FP32_FILE)
    fp32 = out / "export_fp32.onnx.tmp"
    tmp = out / (final.name + ".tmp")
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
    try:
        with torch.no_grad():
            torch.onnx.export(Hidden(model), tuple(enc[n] for n in names), str(fp32), input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                              dynamo=False)
        if quantized:
            quantize(fp32, tmp)
        else:
            fp32.replace(tmp)
    except Exception as e:  # noqa: BLE001  (torch.onnx raises many types)
        raise ExportError(f"cannot export {transformer} to ONNX ({type(e).__name__}: {e})") from None
    finally:
        fp32.unlink(missing_ok=True)
    tmp.replace(final)
    return final


def save_tokenizer(tok, input_names: list[str], out: Path) -> None:
    """Save the transformers tokenizer's ``tokenizers`` pipeline (as transformers builds it:
    transformers 5 rebuilds some, e.g. XLM-R's whitespace handling, differently from the
    folder's tokenizer.json) and its padding/truncation settings. A tokenizer without a
    ``tokenizers`` backend saves nothing (the runtime then loads it with transformers)."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out / TOKENIZER_FILE))
    limit = tok.model_max_length if isinstance(tok.model_max_length, int) and tok.model_max_length < 10**6 else 512
    meta = {"pad_id": int(tok.pad_token_id or 0), "pad_token": tok.pad_token or "[PAD]",
            "max_length": int(limit), "input_names": input_names}
    (out / TOKENIZER_META).write_text(json.dumps(meta), encoding="utf-8")


def quantize(fp32: Path, out: Path) -> None:
    """Quantize the float32 ONNX file ``fp32`` into ``out`` (see :data:`RECIPE`): every MatMul
    with a weight in int8 except the feed-forward down-projections (:func:`down_projections`),
    then the word embeddings per row (:func:`int8_rows`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = down_projections(onnx.load(str(fp32), load_external_data=False))
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)
    int8_rows(out)


def down_projections(model) -> list[str]:
    """Names of the MatMuls whose weight (in, out) narrows (in > out): the feed-forward output
    projections (BERT's ``layer.N/output/dense``, (4H, H)). Their input is the GELU output, whose
    few large channels make ONNX Runtime's per-tensor activation scale coarse for the rest;
    kept in float32 they cost ~25 % more embedding time and recover most of the retrieval the
    all-int8 model lost (README, issue 14: cross-lingual MRR@10 0.290 -> 0.348, float32 0.348)."""
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and len(shapes.get(n.input[1], [])) == 2
            and shapes[n.input[1]][0] > shapes[n.input[1]][1]]


def int8_rows(path: Path) -> None:
    """Store the word-embedding table (the ``Gather`` on ``*word_embeddings.weight``, (vocab,
    hidden) float32) as int8 with one scale per row: ``row ≈ q_row * max|row| / 127``.

    ONNX Runtime's own Gather quantization uses one scale for the whole table; per row keeps
    rare tokens (most CJK ones) as exact as frequent ones. The graph becomes
    ``Mul(Cast(Gather(q, ids)), Gather(scale, ids))``: (B, T, H) * (B, T, 1). Files without
    such a Gather are left as they are.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    node = next((n for n in g.node if n.op_type == "Gather" and n.input[0] in inits
                 and n.input[0].endswith("word_embeddings.weight")), None)
    if node is None:
        return
    table = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)          # (V, H)
    scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0     # (V, 1)
    q = np.clip(np.round(table / scale), -127, 127).astype(np.int8)
    g.initializer.remove(inits[node.input[0]])
    g.initializer.extend([numpy_helper.from_array(q, "word_embeddings_int8"),
                          numpy_helper.from_array(scale.astype(np.float32), "word_embeddings_scale")])
    ids, out = node.input[1], node.output[0]
    at = list(g.node).index(node)
    g.node.remove(node)
    new = [helper.make_node("Gather", ["word_embeddings_int8", ids], ["we_q"], axis=0),
           helper.make_node("Cast", ["we_q"], ["we_f"], to=TensorProto.FLOAT),
           helper.make_node("Gather", ["word_embeddings_scale", ids], ["we_s"], axis=0),
           helper.make_node("Mul", ["we_f", "we_s"], [out])]
    for i, n in enumerate(new):
        g.node.insert(at + i, n)
    onnx.save(model, str(path))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    quantized = "--float32" not in args
    args = [a for a in args if a != "--float32"]
    if len(args) != 2:
        print("usage: python -m kb.onnx_export TRANSFORMER_FOLDER OUT_DIR [--float32]", file=sys.stderr)
        return 2
    try:
        export(Path(args[0]), Path(args[1]), quantized=quantized)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
