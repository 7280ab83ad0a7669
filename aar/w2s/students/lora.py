"""The LoRA student: a causal LM fine-tuned with LoRA on soft labels, read from next-token logits.

This is the study's own student (a small chat model's soft labels teach a larger base LM). Each text
becomes ``text + prompt`` (e.g. "... Question: is this review positive? Answer:") and the label is read
at the last position from the logits of two label words (label 1's first: " Yes"/" No" for binary
rows, " A"/" B" for preference rows): P(label=1) = softmax over those two logits. Only those two rows
of the output embedding are multiplied with the last hidden state, never the whole vocabulary (gemma-3
has 262k words: the full logits would cost more than the rest of the forward pass on short texts).

Training minimises the (optionally weighted) cross-entropy to soft targets, like the head's. The fixed
hyper-parameters (``DEFAULT_PARAMS``) were chosen without true labels: common LoRA settings (rank 8,
alpha 16, lr 5e-4 with linear decay, AdamW) sized to a CPU budget (two epochs, 128 tokens).

Speed: the base model is loaded once per process and shared by every student of the same spec (a
fresh adapter is initialised per fit, from the seed; a fitted student keeps only its adapter tensors,
~1-4 MB); texts are tokenized once per process; batches are length-bucketed (little padding); bf16 on
CUDA, fp32 on CPU; gradient checkpointing is a parameter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aar.w2s.students import StudentSpec, student_kind

DEFAULT_PARAMS: dict[str, Any] = {
    "rank": 8,
    "alpha": 16,
    "dropout": 0.0,  # deterministic given the seed; the data is small and training short
    "lr": 5e-4,
    "epochs": 2,
    "batch_size": 8,
    "max_length": 128,  # tokens per input, prompt included (the text is cut, never the question)
    "eval_batch_size": 32,
    "grad_checkpointing": False,
    # adapters on the top fraction of the layers only: backward then stops there (no gradient flows
    # below the lowest adapter), which halves a training step's cost on CPU at 0.5
    "layers_fraction": 1.0,
    "dtype": None,  # None: bf16 on CUDA, fp32 on CPU
}

# Where bench/lora_w2s.py reads per-stage throughput: totals since the process started.
COUNTERS: dict[str, float] = {
    "train_examples": 0,
    "train_seconds": 0.0,
    "score_examples": 0,
    "score_seconds": 0.0,
}

_PREFERENCE_MARKS = ("\n\nResponse A: ", "\n\nResponse B: ")


def prompt_for(description: str, texts: Sequence[str]) -> tuple[str, tuple[str, str]]:
    """The question appended to every text, and the two label words (label 1's first).

    Preference rows (the published format: "prompt / Response A / Response B", label 1 = A preferred)
    ask which response is better and read " A"/" B"; every other task asks its description as a
    yes/no question and reads " Yes"/" No".
    """
    if texts and all(all(mark in t for mark in _PREFERENCE_MARKS) for t in texts):
        return "\n\nWhich response is better, A or B?\nAnswer:", (" A", " B")
    question = re.sub(r"\s*\([^)]*\)\s*$", "", description.strip()) or "Is the answer yes?"
    return f"\n\nQuestion: {question}\nAnswer (Yes or No):", (" Yes", " No")


def _params(spec: StudentSpec) -> dict[str, Any]:
    unknown = set(spec.params) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown LoRA parameters {sorted(unknown)}; known: {', '.join(DEFAULT_PARAMS)}")
    return {**DEFAULT_PARAMS, **spec.params}


@dataclass
class _Base:
    """One loaded model with a LoRA adapter slot, shared by every student of the same spec."""

    model: Any  # peft.PeftModel
    tokenizer: Any
    decoder: Any  # the transformer body: hidden states, no vocabulary projection
    output_rows: Any  # the output embedding matrix (vocab x hidden), rows taken per label word
    softcap: float | None
    lora_params: dict[str, Any]
    device: str
    _tokens: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)

    def encode(self, texts: Sequence[str], prompt: str, max_length: int) -> list[list[int]]:
        """Token ids of ``text + prompt``, the text cut so the prompt always fits; cached per text."""
        suffix_key = ("\x00suffix", prompt, 0)
        if suffix_key not in self._tokens:
            self._tokens[suffix_key] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        suffix = self._tokens[suffix_key]
        keep = max_length - len(suffix)
        if keep < 8:  # the text would vanish behind the question: say so rather than learn nothing
            raise ValueError(f"the prompt takes {len(suffix)} of max_length={max_length} tokens")
        todo = [t for t in dict.fromkeys(texts) if (t, prompt, max_length) not in self._tokens]
        if todo:
            for text, ids in zip(todo, self.tokenizer(list(todo))["input_ids"], strict=True):
                self._tokens[(text, prompt, max_length)] = list(ids[:keep]) + list(suffix)
        return [self._tokens[(t, prompt, max_length)] for t in texts]

    def label_ids(self, words: tuple[str, str]) -> list[int]:
        ids = [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
        if any(not i for i in ids) or ids[0][0] == ids[1][0]:
            raise ValueError(f"label words {words!r} do not start with two distinct tokens ({ids})")
        return [ids[0][0], ids[1][0]]  # a word that splits is read by its first token

    def batch(self, ids: list[list[int]], index: np.ndarray):
        import torch

        rows = [ids[i] for i in index]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):  # right padding: the last real token is at mask.sum() - 1
            input_ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def label_logits(self, input_ids, mask, label_ids: list[int]):
        """(batch, 2) logits of the two label words at each row's last real position."""
        import torch

        hidden = self.decoder(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(hidden), device=hidden.device), mask.sum(dim=1) - 1]
        rows = self.output_rows[label_ids]
        z = last.float() @ rows.float().T
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def reset_adapter(self) -> None:
        from peft.tuners.lora import LoraLayer

        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)

    def adapter_state(self) -> dict[str, Any]:
        return {name: p.detach().to("cpu", copy=True) for name, p in self.lora_params.items()}

    def set_adapter(self, state: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for name, p in self.lora_params.items():
                p.copy_(state[name].to(p.device, p.dtype))


_BASES: dict[tuple[Any, ...], _Base] = {}
# the projection names of Llama-style decoders (SmolLM2, gemma-3 and most causal LMs of that family)
_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _base(spec: StudentSpec, params: dict[str, Any]) -> _Base:
    key = (
        spec.model,
        params["layers_fraction"],
        spec.device,
        params["dtype"],
        params["rank"],
        params["alpha"],
        params["dropout"],
        params["grad_checkpointing"],
    )
    if key in _BASES:
        return _BASES[key]
    from peft import LoraConfig, get_peft_model

    from aar.w2s.models import load_causal_lm

    lm, tokenizer = load_causal_lm(spec.model, spec.device, params["dtype"])
    n_layers = int(lm.config.num_hidden_layers)
    fraction = float(params["layers_fraction"])
    if not 0 < fraction <= 1:
        raise ValueError(f"layers_fraction must be in (0, 1], got {fraction}")
    top = max(1, round(n_layers * fraction))
    layers = None if top >= n_layers else list(range(n_layers - top, n_layers))
    if params["grad_checkpointing"]:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(
        r=int(params["rank"]),
        lora_alpha=int(params["alpha"]),
        lora_dropout=float(params["dropout"]),
        # attention and MLP projections, never the output layer; by name when only some layers get
        # adapters (peft takes a layer list only with named modules)
        target_modules="all-linear" if layers is None else _PROJECTIONS,
        bias="none",
        layers_to_transform=layers,
    )
    model = get_peft_model(lm, config)
    inner = model.get_base_model()
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else inner.model
    base = _Base(
        model=model,
        tokenizer=tokenizer,
        decoder=decoder,
        output_rows=inner.get_output_embeddings().weight,
        softcap=getattr(inner.config, "final_logit_softcapping", None),
        lora_params={n: p for n, p in model.named_parameters() if p.requires_grad},
        device=spec.device,
    )
    _BASES[key] = base
    return base


def _buckets(lengths: Sequence[int], size: int) -> list[np.ndarray]:
    """Length-bucketed batches: sort by length (stable), cut into ``size`` rows."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


class LoraStudent:
    """A LoRA adapter on a causal LM; fitted state = the adapter's tensors."""

    def __init__(self, spec: StudentSpec, seed: int = 0) -> None:
        if not spec.model:
            raise ValueError("a LoRA student needs a model spec")
        self.spec = spec
        self.seed = seed
        self.params = _params(spec)
        self.adapter: dict[str, Any] | None = None
        self.step_losses: list[float] = []

    def _base(self) -> _Base:
        return _base(self.spec, self.params)

    def fit(
        self, inputs: Sequence[Any] | np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
    ) -> LoraStudent:
        import torch

        texts = [str(t) for t in inputs]
        t = np.clip(np.asarray(targets, dtype=np.float64).reshape(-1), 0.0, 1.0)
        if len(texts) != len(t):
            raise ValueError(f"{len(texts)} inputs and {len(t)} targets do not line up")
        if not texts:
            raise ValueError("cannot fit a student on zero rows")
        w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(w) != len(t) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative, one per row, not all zero")
        w = w / w.mean()
        start = time.perf_counter()
        base = self._base()
        p = self.params
        ids = base.encode(texts, self.spec.prompt, int(p["max_length"]))
        label_ids = base.label_ids(self.spec.label_words)
        torch.manual_seed(self.seed)
        base.reset_adapter()
        batches = _buckets([len(i) for i in ids], int(p["batch_size"]))
        steps = max(1, int(p["epochs"]) * len(batches))
        params = list(base.lora_params.values())
        optimizer = torch.optim.AdamW(params, lr=float(p["lr"]), weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - k / steps)
        rng = np.random.default_rng(self.seed)
        target = torch.tensor(t, dtype=torch.float32, device=base.device)
        weight = torch.tensor(w, dtype=torch.float32, device=base.device)
        base.model.train()
        self.step_losses = []
        for _ in range(int(p["epochs"])):
            for b in rng.permutation(len(batches)):
                index = batches[b]
                input_ids, mask = base.batch(ids, index)
                z = base.label_logits(input_ids, mask, label_ids)
                margin = z[:, 0] - z[:, 1]  # log-odds of label 1 against label 0
                tb, wb = target[index], weight[index]
                loss_rows = -(
                    tb * torch.nn.functional.logsigmoid(margin)
                    + (1 - tb) * torch.nn.functional.logsigmoid(-margin)
                )
                loss = (loss_rows * wb).mean()
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                self.step_losses.append(float(loss.detach()))
        base.model.eval()
        self.adapter = base.adapter_state()
        COUNTERS["train_examples"] += int(p["epochs"]) * len(texts)
        COUNTERS["train_seconds"] += time.perf_counter() - start
        return self

    def predict_proba(self, inputs: Sequence[Any] | np.ndarray) -> np.ndarray:
        import torch

        if self.adapter is None:
            raise RuntimeError("predict_proba before fit")
        texts = [str(t) for t in inputs]
        out = np.zeros(len(texts), dtype=np.float64)
        if not texts:
            return out
        start = time.perf_counter()
        base = self._base()
        base.set_adapter(self.adapter)
        base.model.eval()
        ids = base.encode(texts, self.spec.prompt, int(self.params["max_length"]))
        label_ids = base.label_ids(self.spec.label_words)
        with torch.inference_mode():
            for index in _buckets([len(i) for i in ids], int(self.params["eval_batch_size"])):
                z = base.label_logits(*base.batch(ids, index), label_ids)
                out[index] = torch.sigmoid(z[:, 0] - z[:, 1]).double().cpu().numpy()
        COUNTERS["score_examples"] += len(texts)
        COUNTERS["score_seconds"] += time.perf_counter() - start
        return out

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        if self.adapter is None:
            raise RuntimeError("save before fit")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.adapter.items()}, str(path / "adapter.safetensors"))
        meta = {"spec": self.spec.to_json(), "seed": self.seed, "step_losses": self.step_losses}
        (path / "student.json").write_text(json.dumps(meta))


def _load(path: Path) -> LoraStudent:
    from safetensors.torch import load_file

    meta = json.loads((path / "student.json").read_text())
    student = LoraStudent(StudentSpec.from_json(meta["spec"]), int(meta["seed"]))
    student.adapter = load_file(str(path / "adapter.safetensors"))
    student.step_losses = list(meta.get("step_losses", []))
    return student


@student_kind("lora", load=_load)
def make_lora(spec: StudentSpec, seed: int) -> LoraStudent:
    return LoraStudent(spec, seed)
