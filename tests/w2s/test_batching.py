from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from aar.w2s.batching import l2_normalize, mean_pool, pad, token_budget_batches, tokenized_batches


def test_token_budget_batches_cover_every_text_once_sorted_and_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 130, size=500)
    groups = token_budget_batches(lengths, max_tokens=1024, max_rows=64)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(500))  # each text exactly once
    assert np.all(np.diff(lengths[flat]) >= 0)  # increasing length, so batches pad little
    for g in groups:
        assert len(g) <= 64
        assert len(g) * lengths[g].max() <= 1024
    # padding waste after sorting is small, unlike data-order batches of 32
    padded = sum(len(g) * lengths[g].max() for g in groups)
    plain = sum(32 * lengths[i : i + 32].max() for i in range(0, 500, 32))
    assert padded < 1.1 * lengths.sum() < plain


def test_a_text_longer_than_the_budget_gets_its_own_batch():
    groups = token_budget_batches([5, 300, 6], max_tokens=100)
    assert [g.tolist() for g in groups] == [[0, 2], [1]]


def test_pad_right_pads_with_the_pad_id_and_masks_real_tokens():
    ids, mask = pad([[7, 8, 9], [4]], pad_id=1)
    np.testing.assert_array_equal(ids, [[7, 8, 9], [4, 1, 1]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])


def test_mean_pool_ignores_padded_positions_and_normalize_gives_unit_rows():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    np.testing.assert_allclose(pooled[0], hidden[0, :2].mean(0), rtol=1e-6)
    hidden[0, 2:] = 1e6  # whatever sits under the padding
    np.testing.assert_allclose(mean_pool(hidden, mask)[0], pooled[0], rtol=1e-6)
    unit = l2_normalize(np.vstack([pooled, np.zeros((1, 3), np.float32)]))
    np.testing.assert_allclose(np.linalg.norm(unit[:2], axis=1), 1.0, rtol=1e-6)
    assert np.all(unit[2] == 0)  # a zero row stays zero, no division by zero


def test_tokenized_batches_tokenize_once_truncate_and_split_small_calls(tmp_path):
    from aar.w2s.models import _minilm_tokenizer_dir

    tokenizer = Tokenizer.from_file(str(_minilm_tokenizer_dir() / "tokenizer.json"))
    texts = ["word " * 300, "a short one", "b", "another short text here", "c d"]
    batches = tokenized_batches(tokenizer, texts, max_length=16, max_tokens=4096, pad_id=0, min_batches=3)
    assert len(batches) >= 3  # the budget shrank so parallel workers all get work
    assert sorted(np.concatenate([b.index for b in batches]).tolist()) == list(range(5))
    for b in batches:
        assert b.input_ids.shape == b.attention_mask.shape and b.input_ids.shape[1] <= 16
        for row, i in enumerate(b.index):
            expected = tokenizer.encode(texts[i]).ids  # truncation is still enabled on the tokenizer
            n = int(b.attention_mask[row].sum())
            assert b.input_ids[row, :n].tolist() == expected
            assert np.all(b.input_ids[row, n:] == 0)
