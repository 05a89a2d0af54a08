"""Embedder dtype: bfloat16 vectors agree with float32 ones; bad values say what to use."""
from __future__ import annotations

import numpy as np
import pytest

from kb.embeddings import Embedder

TEXTS = ["中华人民共和国的根本制度是社会主义制度。", "Retrieval augmented generation cites pages.",
         "小明有 3 个苹果，又买了 5 个。"]


def test_bfloat16_agrees_with_float32(tiny_embedder_dir):
    full = Embedder(str(tiny_embedder_dir), dtype="float32").encode_documents(TEXTS)
    half = Embedder(str(tiny_embedder_dir), dtype="bfloat16").encode_documents(TEXTS)
    assert half.dtype == np.float32 and half.shape == full.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-3)
    cos = (full * half).sum(axis=1)
    assert cos.min() > 0.99, cos


def test_settings_pick_the_dtype_and_bad_values_are_refused(settings, monkeypatch):
    import torch

    assert Embedder.from_settings(settings).dtype == "auto"
    assert Embedder.from_settings(settings).torch_dtype("cpu") in (torch.float32, torch.bfloat16)
    bad = Embedder(settings.embedding_model, dtype="fp8")
    with pytest.raises(ValueError, match="use auto, float32 or bfloat16"):
        bad.torch_dtype("cpu")
