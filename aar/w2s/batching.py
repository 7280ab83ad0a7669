"""Tokenize once, then cut the texts into length-sorted batches under a token budget.

Why: a transformer's cost is its padded tokens. A plain loop over batches in data order pads every
text to the longest of its batch (about 2x the real tokens on review sentences); sorting the *token*
lengths (not characters) and filling each batch up to a budget of padded tokens leaves only a few
percent of padding, and keeps each batch's activations small enough to stay in cache. Padding is
masked out, so a text's vector does not depend on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Rows ``index`` of the input, as right-padded ``input_ids`` and ``attention_mask`` (int64)."""

    index: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_rows: int = 256) -> list[np.ndarray]:
    """Indices grouped so that each group, padded to its longest member, holds at most ``max_tokens``
    tokens (a single longer text still gets its own group) and at most ``max_rows`` rows.

    Groups come out in increasing length; ties keep the input order (stable sort)."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order):
            groups.append(order[start:end])
            break
        rows = end - start + 1
        if rows > max_rows or rows * int(lengths[order[end]]) > max_tokens:
            groups.append(order[start:end])
            start = end
    return groups


def pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to a matrix; the mask marks real tokens."""
    width = max((len(x) for x in ids), default=0)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return input_ids, mask


def tokenized_batches(
    tokenizer, texts: Sequence[str], max_length: int, max_tokens: int, pad_id: int, min_batches: int = 1
) -> list[Batch]:
    """Encode all ``texts`` in one call of a ``tokenizers.Tokenizer`` (truncated to ``max_length``, no
    padding), then cut padded token-budget batches. The budget shrinks so that there are at least
    ``min_batches`` batches when the texts allow it, so a small call still keeps every worker busy."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    encodings = tokenizer.encode_batch(list(texts))
    lengths = [len(e.ids) for e in encodings]
    budget = max_tokens
    if min_batches > 1 and lengths:
        budget = max(1, min(max_tokens, sum(lengths) // min_batches))
    batches = []
    for index in token_budget_batches(lengths, budget):
        input_ids, mask = pad([encodings[i].ids for i in index], pad_id)
        batches.append(Batch(index, input_ids, mask))
    return batches


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the unmasked token states (sentence-transformers' mean pooling), as float32."""
    weights = mask.astype(np.float32)
    summed = np.einsum("bld,bl->bd", hidden.astype(np.float32, copy=False), weights)
    return summed / np.clip(weights.sum(axis=1, keepdims=True), 1e-9, None)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise unit norm, as sentence-transformers' Normalize layer (eps 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
