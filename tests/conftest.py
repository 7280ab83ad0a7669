"""Shared fixtures. Real models and data: the fast tier (MiniLM ONNX / MiniLM-L6) on small subsets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
