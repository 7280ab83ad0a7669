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
