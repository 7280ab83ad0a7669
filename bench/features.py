"""Feature-extraction throughput: aar's encoders against a plain per-batch loop, same model, same texts.

The plain loop is what one writes first, and it is the fp32 reference: transformers on torch (or
onnxruntime for the ONNX-only MiniLM-L3), batches in the data's order, padded to the longest text of
each batch, mean pooling. aar's path tokenizes once, sorts by token length into token-budget batches
and runs ONNX Runtime (MiniLM-L6 and mpnet exported once from their packages). Both run in this one
process, interleaved round by round (plain, aar, plain, aar, ...), so load from other processes hits
both alike; each path's best round is reported, with the ratio, and the min cosine over *all* texts
between aar's vectors and the plain loop's (sentence-transformers models end in a normalisation
layer, so only the direction is compared).

A lower-precision model (``fp32_of`` set: mpnet-bf16) is timed against its fp32 model's plain loop
and, in the same interleaved rounds, against its fp32 model's aar path (the exact tier's runtime); its
cosine to both fp32 outputs is reported as mean and min over all texts.

"Where the time goes" (--profile) splits aar's path: tokenizing, padded vs real tokens of both
paths, ONNX Runtime's time per operator type, pooling.

    .venv/bin/python bench/features.py                          # minilm-l3, minilm-l6, mpnet
    .venv/bin/python bench/features.py --models mpnet --profile --export-cold
    .venv/bin/python bench/features.py --models gemma3 --n 128   # torch models: no ONNX path
    .venv/bin/python bench/features.py --models mpnet-bf16 --n 800 --json bench/results/bf16_features.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from aar.w2s import models as M
from aar.w2s.batching import mean_pool, pad, token_budget_batches
from aar.w2s.defaults import HOME_TASK
from aar.w2s.tasks import load_task


def plain_encoder(name: str, batch_size: int):
    """The first loop anyone writes; kept deliberately naive (it is the baseline and the reference)."""
    spec = M.get_model(name)
    if spec.kind == "onnx":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(M._minilm_tokenizer_dir() / "tokenizer.json"))
        tok.enable_truncation(max_length=spec.max_tokens)
        tok.enable_padding()
        sess = ort.InferenceSession(str(M._minilm_l3_onnx()), providers=["CPUExecutionProvider"])
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
        folder = M._sentence_transformers_dir(spec)
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


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(cosines(a, b).min())


def interleaved(paths: dict, texts: list[str], rounds: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Best texts/s of each path over ``rounds`` interleaved rounds, and each path's last output."""
    best = dict.fromkeys(paths, float("inf"))
    outputs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for key, fn in paths.items():
            start = time.perf_counter()
            outputs[key] = fn(texts)
            best[key] = min(best[key], time.perf_counter() - start)
    return {key: len(texts) / seconds for key, seconds in best.items()}, outputs


def export_cold(name: str) -> float:
    """Seconds to export ``name`` to ONNX into an empty folder (what a fresh cache pays once)."""
    from aar.w2s.onnx_export import exported_onnx

    spec = M.get_model(name)
    with tempfile.TemporaryDirectory(prefix="aar-export-") as tmp:
        start = time.perf_counter()
        exported_onnx(name, M._sentence_transformers_dir(spec), spec.weights_id, root=Path(tmp))
        return time.perf_counter() - start


def profile(name: str, texts: list[str], console: Console) -> None:
    """Where aar's path spends its time for ``name``, and how much padding each path computes."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    spec = M.get_model(name)
    if spec.kind == "onnx":
        graph, tok_json, pad_id = M._minilm_l3_onnx(), M._minilm_tokenizer_dir() / "tokenizer.json", 0
        output = "onnx::Shape_422"
    elif spec.kind == "sentence-transformers":
        from aar.w2s.onnx_export import exported_onnx

        folder = M._sentence_transformers_dir(spec)
        graph = exported_onnx(name, folder, spec.weights_id)
        tok_json = folder / "tokenizer.json"
        pad_id = int(json.loads((folder / "config.json").read_text()).get("pad_token_id") or 0)
        output = "last_hidden_state"
    else:
        console.print(f"{name}: no ONNX path to profile")
        return
    tok = Tokenizer.from_file(str(tok_json))
    tok.no_padding()
    tok.enable_truncation(max_length=spec.max_tokens)
    start = time.perf_counter()
    encodings = tok.encode_batch(texts)
    tokenize_s = time.perf_counter() - start
    lengths = np.array([len(e.ids) for e in encodings])
    plain_padded = sum(
        len(lengths[i : i + spec.batch_size]) * lengths[i : i + spec.batch_size].max()
        for i in range(0, len(lengths), spec.batch_size)
    )
    groups = token_budget_batches(lengths, spec.tokens_per_batch)
    aar_padded = sum(len(g) * lengths[g].max() for g in groups)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as each of aar's workers runs
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"aar-ort-{name}")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    pool_s = run_s = 0.0
    for group in groups:
        ids, mask = pad([encodings[i].ids for i in group], pad_id)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        start = time.perf_counter()
        hidden = session.run([output], {k: v for k, v in feeds.items() if k in names})[0]
        run_s += time.perf_counter() - start
        start = time.perf_counter()
        mean_pool(hidden, mask)
        pool_s += time.perf_counter() - start
    trace = session.end_profiling()
    per_op: collections.Counter[str] = collections.Counter()
    for event in json.loads(Path(trace).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    os.unlink(trace)
    total_op = sum(per_op.values()) or 1
    ops = ", ".join(f"{op} {100 * us / total_op:.1f}%" for op, us in per_op.most_common(5))
    if spec.kind == "sentence-transformers":  # its packaged config gives the layer shapes
        config = graph_config(spec)
        flop = _flop_per_token(config) * aar_padded
        peak = gemm_peak_gflops(int(config["hidden_size"]), int(config["intermediate_size"]))
        console.print(
            f"[bold]{name}[/]: fp32 ceiling on this CPU: torch's single-thread GEMM at the model's shapes "
            f"{peak:.0f} GFLOP/s; aar's path {flop / run_s / 1e9:.0f} GFLOP/s on one thread "
            f"({100 * flop / run_s / 1e9 / peak:.0f}% of it, {flop / 1e12:.2f} TFLOP of layer matmuls): "
            "what is left to win in fp32 is that gap, not more"
        )
    console.print(
        f"[bold]{name}[/]: real tokens {lengths.sum()}, padded: plain loop {plain_padded} "
        f"({plain_padded / lengths.sum():.2f}x), aar {aar_padded} ({aar_padded / lengths.sum():.2f}x); "
        f"tokenize {tokenize_s:.3f} s, model {run_s:.2f} s, pooling {pool_s:.3f} s "
        f"({len(groups)} batches, profiled on 1 thread); operators: {ops}"
    )


def graph_config(spec) -> dict:  # noqa: ANN001
    """The packaged model's transformer config (hidden size, intermediate size, layers)."""
    return json.loads((M._sentence_transformers_dir(spec) / "config.json").read_text())


def _flop_per_token(config: dict) -> float:
    """Multiply-adds x 2 of one token through the encoder layers' dense matmuls (Q, K, V, output, the
    two FFN projections): the arithmetic that no runtime can skip; attention scores are left out
    (short texts: <2% here), so this undercounts slightly."""
    h, f = int(config["hidden_size"]), int(config["intermediate_size"])
    layers = int(config["num_hidden_layers"])
    return 2.0 * layers * (4 * h * h + 2 * h * f)


def gemm_peak_gflops(hidden: int, ffn: int, tokens: int = 1024, repeats: int = 20) -> float:
    """The best fp32 GEMM rate this CPU gives one thread at the model's shapes (torch's BLAS), GFLOP/s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best = 0.0
    try:
        for k, n in ((hidden, hidden), (hidden, ffn), (ffn, hidden)):
            a, b = torch.randn(tokens, k), torch.randn(k, n)
            for _ in range(3):
                a @ b
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            best = max(best, 2.0 * tokens * k * n * repeats / (time.perf_counter() - start) / 1e9)
    finally:
        torch.set_num_threads(threads)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="minilm-l3,minilm-l6,mpnet")
    parser.add_argument("--n", type=int, default=384, help="texts per measurement")
    parser.add_argument("--task", default=HOME_TASK, help="texts come from this task")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each counts")
    parser.add_argument("--profile", action="store_true", help="also show where aar's path spends time")
    parser.add_argument("--export-cold", action="store_true", help="also time a cold ONNX export")
    parser.add_argument("--json", default=None, help="also write the rows (and the conditions) here")
    args = parser.parse_args()
    rows = load_task(args.task).rows
    texts = [r.text for r in rows[: args.n]]
    console = Console(width=200)  # a file or pipe gets whole columns
    lengths = [len(t) for t in texts]
    load_start = list(os.getloadavg())
    console.print(
        f"{len(texts)} texts from {args.task}: {np.mean(lengths):.0f} chars mean, "
        f"{np.percentile(lengths, 95):.0f} p95; {M._threads()} threads; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    table = Table(
        title=f"feature extraction (texts/s, best of {args.rounds} interleaved rounds, one process)"
    )
    columns = [
        "model",
        "aar runtime",
        "plain loop (fp32)",
        "aar",
        "speed-up",
        "min cosine(aar, fp32 plain)",
        "mean cosine(aar, fp32 plain)",
        "fp32 aar",
        "vs fp32 aar",
        "cosine(aar, fp32 aar) mean / min",
        "aar load s",
    ]
    if args.export_cold:
        columns.append("export s (cold)")
    for col in columns:
        table.add_column(col)
    records = []
    for name in args.models.split(","):
        spec = M.get_model(name)
        start = time.perf_counter()
        ours = M.load_encoder(name)
        load_s = time.perf_counter() - start
        # a lower-precision model's reference is its fp32 model: that model's plain loop and aar path
        reference = spec.fp32_of or name
        plain = plain_encoder(reference, M.get_model(reference).batch_size)
        paths = {"plain": plain, "aar": lambda t, enc=ours: enc(t, None)}
        if spec.fp32_of:
            paths["fp32 aar"] = lambda t, enc=M.load_encoder(spec.fp32_of): enc(t, None)
        for fn in paths.values():
            fn(texts[:8])
        rates, outputs = interleaved(paths, texts, args.rounds)
        to_plain = cosines(outputs["aar"], outputs["plain"])
        record = {
            "model": name,
            "runtime": spec.runtime,
            "reference": reference,
            "texts_per_s": {k: round(v, 2) for k, v in rates.items()},
            "speedup_vs_plain": round(rates["aar"] / rates["plain"], 3),
            "cosine_to_fp32_plain": {"mean": float(to_plain.mean()), "min": float(to_plain.min())},
            "load_s": round(load_s, 2),
        }
        row = [
            name,
            spec.runtime.split(";")[-1] if not spec.fp32_of else spec.runtime.split(";")[0] + " bf16",
            f"{rates['plain']:.1f}",
            f"{rates['aar']:.1f}",
            f"{rates['aar'] / rates['plain']:.2f}x",
            f"{to_plain.min():.6f}",
            f"{to_plain.mean():.6f}",
        ]
        if spec.fp32_of:
            to_exact = cosines(outputs["aar"], outputs["fp32 aar"])
            record["speedup_vs_fp32_aar"] = round(rates["aar"] / rates["fp32 aar"], 3)
            record["cosine_to_fp32_aar"] = {"mean": float(to_exact.mean()), "min": float(to_exact.min())}
            row += [
                f"{rates['fp32 aar']:.1f}",
                f"{rates['aar'] / rates['fp32 aar']:.2f}x",
                f"{to_exact.mean():.6f} / {to_exact.min():.6f}",
            ]
        else:
            row += ["-", "-", "-"]
        row.append(f"{load_s:.1f}")
        if args.export_cold:
            row.append(f"{export_cold(name):.1f}" if spec.kind == "sentence-transformers" else "-")
        table.add_row(*row)
        records.append(record)
    console.print(table)
    if args.json:
        conditions = {
            "texts": len(texts),
            "task": args.task,
            "rounds": args.rounds,
            "threads": M._threads(),
            "cores": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": list(os.getloadavg()),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        Path(args.json).write_text(json.dumps({"conditions": conditions, "rows": records}, indent=1) + "\n")
        console.print(f"wrote {args.json}")
    if args.profile:
        for name in args.models.split(","):
            profile(name, texts, console)


if __name__ == "__main__":
    main()
