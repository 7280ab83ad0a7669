from __future__ import annotations

import numpy as np
import pytest

from aar.w2s.features import FeatureCache, FeatureCacheError, features


class CountingEncoder:
    def __init__(self, offset: float = 0.0):
        self.calls: list[str] = []
        self.offset = offset

    def __call__(self, texts, progress=None):
        self.calls.extend(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, self.offset] for t in texts], dtype=np.float32)


def test_cache_returns_identical_features_and_computes_once(tmp_path):
    enc = CountingEncoder()
    texts = ["a cat", "a dog", "a cat", "a bird"]
    x1 = features("m", texts, encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    assert enc.calls == ["a cat", "a dog", "a bird"]  # duplicates computed once
    x2 = features("m", texts, encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    assert enc.calls == ["a cat", "a dog", "a bird"]  # nothing recomputed
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(x1[0], x1[2])
    # a fresh process view of the same folder (new cache object) reads the same bytes
    np.testing.assert_array_equal(FeatureCache("m", "r1", root=tmp_path).get(texts), x1)


def test_cache_is_invalidated_by_model_revision_or_text_change(tmp_path):
    enc = CountingEncoder()
    features("m", ["hello"], encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    features("m", ["hello"], encoder=enc, revision="r2", root=tmp_path, show_progress=False)
    features("other", ["hello"], encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    features("m", ["hello!"], encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    assert enc.calls == ["hello", "hello", "hello", "hello!"]


def test_corrupted_cache_file_gives_an_error_naming_it(tmp_path):
    enc = CountingEncoder()
    features("m", ["one", "two"], encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    shard = next(tmp_path.rglob("*.npz"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(FeatureCacheError, match=str(shard.name)):
        features("m", ["one"], encoder=enc, revision="r1", root=tmp_path, show_progress=False)
    shard.write_bytes(b"not a zip at all")
    with pytest.raises(FeatureCacheError, match="corrupted feature cache file"):
        features("m", ["one"], encoder=enc, revision="r1", root=tmp_path, show_progress=False)


def test_real_fast_model_features_are_deterministic_and_cached(tmp_path):
    texts = ["The room was clean and the staff friendly.", "Terrible breakfast, rude reception.", "ok"]
    a = features("minilm-l3", texts, root=tmp_path, show_progress=False)
    assert a.shape == (3, 384) and np.isfinite(a).all()
    b = features("minilm-l3", list(reversed(texts)), root=tmp_path, show_progress=False)
    np.testing.assert_allclose(a, b[::-1])
    # batching by length must not change a text's vector (padding is masked out)
    from aar.w2s.models import load_encoder

    alone = load_encoder("minilm-l3")([texts[0]], None)
    np.testing.assert_allclose(alone[0], a[0], rtol=1e-4, atol=1e-5)


def test_on_progress_reports_model_done_and_total_per_batch(tmp_path):
    calls = []

    def batched(texts, progress=None):
        for i in range(0, len(texts), 2):
            progress(len(texts[i : i + 2]))
        return np.zeros((len(texts), 3), np.float32)

    texts = ["a", "b", "c", "d", "e"]
    features(
        "m",
        texts,
        encoder=batched,
        revision="r1",
        root=tmp_path,
        show_progress=False,
        on_progress=lambda *a: calls.append(a),
    )
    assert calls == [("m", 0, 5), ("m", 2, 5), ("m", 4, 5), ("m", 5, 5)]
    calls.clear()
    features(
        "m",
        texts + ["f"],
        encoder=batched,
        revision="r1",
        root=tmp_path,
        show_progress=False,
        on_progress=lambda *a: calls.append(a),
    )
    assert calls == [("m", 0, 1), ("m", 1, 1)]  # total counts only what the cache lacked


def test_runtime_is_part_of_the_cache_key_so_runtimes_never_mix(tmp_path, monkeypatch):
    """Two runtimes differ by rounding; an experiment must read one runtime's vectors only."""
    from aar.w2s import models

    spec = models.get_model("mpnet")
    assert "onnxruntime==" in spec.revision and "onnx-export:" in spec.revision
    assert "torch==" in models.get_model("gemma3").revision
    enc = CountingEncoder()
    features("minilm-l6", ["hello"], encoder=enc, root=tmp_path, show_progress=False)
    features("minilm-l6", ["hello"], encoder=enc, root=tmp_path, show_progress=False)
    assert enc.calls == ["hello"]
    real = models._version
    monkeypatch.setattr(models, "_version", lambda dist: "0.0-other" if dist == "onnxruntime" else real(dist))
    features("minilm-l6", ["hello"], encoder=enc, root=tmp_path, show_progress=False)
    assert enc.calls == ["hello", "hello"]  # another runtime version: recomputed, not mixed


def test_minilm_l6_onnx_path_equals_sentence_transformers_up_to_rounding():
    """The default tier's promise: the ONNX export moves a feature by rounding only (cosine >= 0.9999)."""
    from sentence_transformers import SentenceTransformer

    from aar.w2s import models

    texts = ["The room was clean and the staff friendly.", "Terrible breakfast, rude reception.", "ok", ""]
    texts.append("a long review that goes past the token limit " * 20)
    spec = models.get_model("minilm-l6")
    ours = models.load_encoder("minilm-l6")(texts, None)
    reference = SentenceTransformer(str(models._sentence_transformers_dir(spec)), device="cpu")
    reference.max_seq_length = spec.max_tokens
    theirs = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.9999
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # same scale too: both normalise


@pytest.mark.slow
def test_mpnet_onnx_path_equals_sentence_transformers_up_to_rounding():
    from sentence_transformers import SentenceTransformer

    from aar.w2s import models
    from aar.w2s.defaults import HOME_TASK
    from aar.w2s.tasks import load_task

    texts = [r.text for r in load_task(HOME_TASK).rows[:200]]
    ours = models.load_encoder("mpnet")(texts, None)
    reference = SentenceTransformer(str(models._mpnet_dir()), device="cpu")
    reference.max_seq_length = models.get_model("mpnet").max_tokens
    theirs = reference.encode(texts, convert_to_numpy=True, batch_size=32)
    assert ((ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)).min() >= 0.9999
