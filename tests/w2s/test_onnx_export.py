"""The ONNX export path on tiny random models built here (no download): cached once per content key,
safe when two callers race, and equal to torch's fp32 arithmetic up to rounding, padding included."""

from __future__ import annotations

import json
import stat
import threading

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

from aar.w2s import models as M
from aar.w2s import onnx_export
from aar.w2s.onnx_export import export_key, exported_onnx

TEXTS = [
    "The room was clean and the staff friendly.",
    "Terrible breakfast.",
    "ok",
    "",
    "A much longer sentence about the film, its actors, its plot and the music, which goes on " * 3,
]


def _tiny(kind: str, folder):
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if kind == "mpnet":  # relative position buckets in attention: the default strong model's shape
        model = MPNetModel(MPNetConfig(vocab_size=30527, pad_token_id=1, **small))
    else:
        model = BertModel(BertConfig(vocab_size=30522, pad_token_id=0, **small))
    model.eval()
    model.save_pretrained(folder)
    return model


def test_export_key_names_weights_recipe_and_versions(monkeypatch):
    key = export_key("pkg==1.0")
    assert key != export_key("pkg==1.1")
    monkeypatch.setattr(onnx_export, "EXPORT_RECIPE", onnx_export.EXPORT_RECIPE + 1)
    assert export_key("pkg==1.0") != key
    monkeypatch.setattr(onnx_export, "EXPORT_RECIPE", onnx_export.EXPORT_RECIPE - 1)
    monkeypatch.setattr(onnx_export, "_version", lambda dist: "9.9" if dist == "torch" else "1")
    assert export_key("pkg==1.0") != key


def test_export_happens_once_and_racing_callers_share_it(tmp_path):
    _tiny("bert", tmp_path / "model")
    exports = []
    paths = []

    def call():
        paths.append(
            exported_onnx(
                "tiny", tmp_path / "model", "tiny==1", root=tmp_path / "onnx", on_export=exports.append
            )
        )

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(exports) == 1 and len(set(paths)) == 1
    path = paths[0]
    assert path.name == f"tiny-{export_key('tiny==1')}.onnx"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # no half-written temporaries left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, f"{path.name}.lock"])
    call()
    assert len(exports) == 1  # cached: no second export
    # other weights, other file
    exported_onnx("tiny", tmp_path / "model", "tiny==2", root=tmp_path / "onnx", on_export=exports.append)
    assert len(exports) == 2


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_onnx_encoder_matches_torch_text_by_text(tmp_path, kind):
    """Batched, padded, sorted and run on workers, each vector equals torch on the text alone."""
    model = _tiny(kind, tmp_path / "model")
    graph = exported_onnx(kind, tmp_path / "model", f"{kind}==test", root=tmp_path / "onnx")
    tokenizer_json = M._minilm_tokenizer_dir() / "tokenizer.json"  # any wordpiece vocab fits both
    spec = M.ModelSpec(kind, "none", "sentence-transformers", 32, "tiny", max_tokens=24, tokens_per_batch=64)
    pad_id = json.loads((tmp_path / "model" / "config.json").read_text())["pad_token_id"]
    encode = M._ort_encoder(spec, graph, tokenizer_json, "last_hidden_state", pad_id, normalize=True)
    done = []
    got = encode(TEXTS, done.append)
    assert sum(done) == len(TEXTS) and len(done) >= 2  # progress per batch, every text counted

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()  # the packaged tokenizer.json pads to 128 by default
    tok.enable_truncation(max_length=24)
    with torch.no_grad():
        for i, text in enumerate(TEXTS):
            ids = torch.tensor([tok.encode(text).ids])
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
            ref = hidden.mean(0).numpy()
            ref = ref / np.linalg.norm(ref)
            np.testing.assert_allclose(got[i], ref, atol=1e-5)
            assert float(got[i] @ ref) >= 0.9999
