"""The scripted researcher's idea space: W2S methods as small configs, rendered to idea files.

A config is ``{"family": name, "params": {...}}``. Families compose and vary the built-in methods'
mechanisms (hard/soft/confident targets, confidence weights, the auxiliary-confidence loss, self
training, bootstrapping, the strong model's zero-shot prior) plus neighbourhood label smoothing on the
strong features, and ``ensemble`` averages two configs. ``render`` writes a self-contained idea
module (``def run(ctx)``) whose docstring carries the config as JSON, so a forum post or a fetched
commit is enough for another researcher to rebuild and mutate it.
"""

from __future__ import annotations

import json
import random

# family -> {param: (kind, low, high)}; kinds: "float", "int", "bool", "choice"
SPACE: dict[str, dict[str, tuple]] = {
    "hard": {"threshold": ("float", 0.4, 0.6)},
    "soft_temp": {"temperature": ("float", 0.3, 3.0)},
    "confident": {"margin": ("float", 0.05, 0.4), "soft": ("bool",)},
    "weighted": {"gamma": ("float", 0.25, 3.0)},
    "logconf": {"alpha_max": ("float", 0.2, 1.0), "rounds": ("int", 1, 6)},
    "selftrain": {"rounds": ("int", 1, 4), "prior_match": ("bool",)},
    "bootstrap": {"rounds": ("int", 1, 5), "keep_frac": ("float", 0.4, 0.95)},
    # knn thresholds its smoothed labels: on the home dev split (3 seeds) hard beat soft at each of the
    # 6 (k, alpha) pairs tried, e.g. k=30, alpha=0.8: dev PGR 0.41 vs 0.28 (equal on the visible task).
    # A config that names "hard" still runs as written. ``hops`` iterates the smoothing (label
    # propagation: each hop smooths the previous hop's labels, anchored to the weak ones by 1 - alpha).
    # On the home dev split (3 seeds, 569 items, both feature tiers) k=30, alpha=0.95: 2 hops dev PGR
    # 0.71 / 0.66 (fp32 / bf16) vs 1 hop 0.58 / 0.54; with alpha=0.8 more hops did not help. A config
    # without ``hops`` runs one, as before.
    "knn": {"k": ("int", 5, 60), "alpha": ("float", 0.5, 1.0), "hops": ("int", 1, 4)},
    "prior_blend": {"weight": ("float", 0.1, 0.9)},
}
FAMILIES = list(SPACE)

# starting directions -> families a researcher prefers (keyword match on the direction text)
DIRECTION_FAMILIES: list[tuple[tuple[str, ...], list[str]]] = [
    (("confiden", "noise", "filter", "clean"), ["confident", "weighted", "logconf"]),
    (("self", "bootstrap", "pseudo", "iterat"), ["selftrain", "bootstrap", "logconf"]),
    (("neighbo", "structure", "geometry", "cluster", "graph", "smooth"), ["knn", "prior_blend"]),
    (("prior", "zero-shot", "zeroshot", "unsupervised", "latent"), ["prior_blend", "knn"]),
    (("soft", "calibrat", "temperature"), ["soft_temp", "weighted", "confident"]),
    (("ensembl", "combin", "compos"), ["ensemble"]),
]


def preferred_families(direction: str) -> list[str]:
    text = direction.lower()
    out: list[str] = []
    for keys, fams in DIRECTION_FAMILIES:
        if any(k in text for k in keys):
            out += [f for f in fams if f not in out]
    return out


def _sample_param(rng: random.Random, spec: tuple):
    kind = spec[0]
    if kind == "float":
        return round(rng.uniform(spec[1], spec[2]), 3)
    if kind == "int":
        return rng.randint(spec[1], spec[2])
    if kind == "bool":
        return rng.random() < 0.5
    raise ValueError(kind)


def sample(rng: random.Random, family: str) -> dict:
    if family == "ensemble":
        a, b = rng.sample(FAMILIES, 2)
        return {"family": "ensemble", "params": {"members": [sample(rng, a), sample(rng, b)]}}
    return {"family": family, "params": {k: _sample_param(rng, s) for k, s in SPACE[family].items()}}


def mutate(rng: random.Random, cfg: dict) -> dict:
    """Change one parameter a little (or a member of an ensemble)."""
    cfg = json.loads(json.dumps(cfg))
    if cfg["family"] == "ensemble":
        members = cfg["params"]["members"]
        i = rng.randrange(len(members))
        members[i] = mutate(rng, members[i])
        return cfg
    space = SPACE[cfg["family"]]
    key = rng.choice(sorted(space))
    spec = space[key]
    value = cfg["params"].get(key)
    if spec[0] == "bool":
        cfg["params"][key] = not value
    elif spec[0] == "int":
        cfg["params"][key] = min(spec[2], max(spec[1], int(value or spec[1]) + rng.choice((-2, -1, 1, 2))))
    else:
        span = spec[2] - spec[1]
        cfg["params"][key] = round(
            min(spec[2], max(spec[1], float(value or spec[1]) + rng.gauss(0, span / 6))), 3
        )
    return cfg


def combine(a: dict, b: dict) -> dict:
    return {"family": "ensemble", "params": {"members": [a, b]}}


def key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def describe(cfg: dict) -> str:
    if cfg["family"] == "ensemble":
        return "ensemble(" + " + ".join(describe(m) for m in cfg["params"]["members"]) + ")"
    params = ", ".join(f"{k}={v}" for k, v in sorted(cfg["params"].items()))
    return f"{cfg['family']}({params})"


LIBRARY = """
import numpy as np

from aar.w2s.methods import get_method


def _prior_matched_hard(p, positive_rate):
    threshold = np.quantile(p, 1 - positive_rate) if 0 < positive_rate < 1 else 0.5
    return (p >= threshold).astype(float)


def _clip(p):
    return np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _fit(ctx, x, targets, weights=None):
    # the tier's fixed student: the feature head (inputs: features), or LoRA (inputs: texts)
    return ctx.fit_student(x, targets, weights)


def _hard(ctx, p):
    head = _fit(ctx, ctx.train_inputs, (ctx.weak >= p["threshold"]).astype(float))
    return head.predict_proba(ctx.test_inputs)


def _soft_temp(ctx, p):
    z = np.log(_clip(ctx.weak)) - np.log(1 - _clip(ctx.weak))
    return _fit(ctx, ctx.train_inputs, _sigmoid(z / p["temperature"])).predict_proba(ctx.test_inputs)


def _confident(ctx, p):
    keep = np.abs(ctx.weak - 0.5) >= p["margin"]
    if keep.sum() < 20 or len(np.unique(ctx.weak[keep] >= 0.5)) < 2:
        keep = np.ones(len(ctx.weak), dtype=bool)
    targets = ctx.weak[keep] if p["soft"] else (ctx.weak[keep] >= 0.5).astype(float)
    return _fit(ctx, ctx.train_inputs[keep], targets).predict_proba(ctx.test_inputs)


def _weighted(ctx, p):
    weights = np.abs(2 * ctx.weak - 1) ** p["gamma"] + 1e-3
    student = _fit(ctx, ctx.train_inputs, (ctx.weak >= 0.5).astype(float), weights)
    return student.predict_proba(ctx.test_inputs)


def _logconf(ctx, p):
    weak_hard = (ctx.weak >= 0.5).astype(float)
    rate = float(weak_hard.mean())
    head = _fit(ctx, ctx.train_inputs, weak_hard)
    for r in range(1, p["rounds"] + 1):
        alpha = p["alpha_max"] * r / p["rounds"]
        own = _prior_matched_hard(head.predict_proba(ctx.train_inputs), rate)
        head = _fit(ctx, ctx.train_inputs, (1 - alpha) * weak_hard + alpha * own)
    return head.predict_proba(ctx.test_inputs)


def _selftrain(ctx, p):
    rate = float((ctx.weak >= 0.5).mean())
    head = _fit(ctx, ctx.train_inputs, (ctx.weak >= 0.5).astype(float))
    for _ in range(p["rounds"]):
        q = head.predict_proba(ctx.train_inputs)
        labels = _prior_matched_hard(q, rate) if p["prior_match"] else (q >= 0.5).astype(float)
        head = _fit(ctx, ctx.train_inputs, labels)
    return head.predict_proba(ctx.test_inputs)


def _bootstrap(ctx, p):
    head = _fit(ctx, ctx.train_inputs, (ctx.weak >= 0.5).astype(float))
    rng = np.random.default_rng(ctx.seed)
    for _ in range(p["rounds"]):
        q = head.predict_proba(ctx.train_inputs)
        conf = np.abs(q - 0.5)
        keep = conf >= np.quantile(conf, 1 - p["keep_frac"])
        keep |= rng.random(len(q)) < 0.1
        head = _fit(ctx, ctx.train_inputs[keep], (q[keep] >= 0.5).astype(float))
    return head.predict_proba(ctx.test_inputs)


def _neighbour_mean(x, values, k):
    x = np.asarray(x, dtype=np.float32)
    xn = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)
    k = max(1, min(k, len(x) - 1))
    out = np.empty(len(x))
    for start in range(0, len(x), 512):
        sims = xn[start:start + 512] @ xn.T
        for i in range(sims.shape[0]):
            sims[i, start + i] = -np.inf
        idx = np.argpartition(-sims, k, axis=1)[:, :k]
        out[start:start + 512] = values[idx].mean(axis=1)
    return out


def _knn(ctx, p):
    smooth = ctx.weak
    for _ in range(int(p.get("hops", 1))):  # features only: not on a text tier
        smooth = (1 - p["alpha"]) * ctx.weak + p["alpha"] * _neighbour_mean(ctx.train_x, smooth, p["k"])
    targets = (smooth >= 0.5).astype(float) if p.get("hard", True) else smooth
    return _fit(ctx, ctx.train_inputs, targets).predict_proba(ctx.test_inputs)


def _prior_blend(ctx, p):
    base = _fit(ctx, ctx.train_inputs, (ctx.weak >= 0.5).astype(float)).predict_proba(ctx.test_inputs)
    return p["weight"] * np.asarray(get_method("zeroshot_prior")(ctx)) + (1 - p["weight"]) * base


def _ensemble(ctx, p):
    return np.mean([_run(m, ctx) for m in p["members"]], axis=0)


_FAMILIES = {"hard": _hard, "soft_temp": _soft_temp, "confident": _confident, "weighted": _weighted,
             "logconf": _logconf, "selftrain": _selftrain, "bootstrap": _bootstrap, "knn": _knn,
             "prior_blend": _prior_blend, "ensemble": _ensemble}


def _run(cfg, ctx):
    return np.clip(np.asarray(_FAMILIES[cfg["family"]](ctx, cfg["params"]), dtype=np.float64), 0.0, 1.0)


def run(ctx):
    return _run(CONFIG, ctx)
"""


def render(cfg: dict, name: str) -> str:
    return (
        f'"""Idea {name}: {describe(cfg)}\n\nconfig: {json.dumps(cfg, sort_keys=True)}\n"""\n\n'
        f"CONFIG = {json.dumps(cfg, sort_keys=True)!r}\n"
        "import json as _json\n\nCONFIG = _json.loads(CONFIG)\n" + LIBRARY
    )


def parse_config(text: str) -> dict | None:
    """The config of an idea file or a forum post ("config: {...}" on one line), if any."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("config:"):
            try:
                cfg = json.loads(line[len("config:") :].strip())
            except ValueError:
                return None
            if isinstance(cfg, dict) and (cfg.get("family") in SPACE or cfg.get("family") == "ensemble"):
                return cfg
    return None
