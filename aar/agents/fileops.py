"""Inside the sandbox: the file tools' work, done as the agent's uid so file modes and mounts apply.

The host (often root) never opens a path the agent named: a symlink planted in the workspace would
otherwise make root read or write anything. Reads JSON {"op", ...} on stdin, prints JSON on stdout.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile
from pathlib import Path


def _read(req: dict) -> dict:
    path = Path(req["path"])
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    offset, limit = int(req.get("offset") or 0), req.get("limit")
    chosen = lines[offset : offset + int(limit)] if limit else lines[offset:]
    return {"content": "".join(chosen), "lines": len(lines), "bytes": len(data)}


def _write(req: dict) -> dict:
    path = Path(req["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    content = req["content"]
    with open(path, "a" if req.get("append") else "w", encoding="utf-8") as f:
        f.write(content)
    return {"written": len(content.encode()), "path": str(path)}


def _edit(req: dict) -> dict:
    path = Path(req["path"])
    text = path.read_text(encoding="utf-8")
    old, new = req["old"], req["new"]
    count = text.count(old)
    if count == 0:
        raise ValueError("old text not found in the file")
    if count > 1 and not req.get("replace_all"):
        raise ValueError(f"old text occurs {count} times; make it unique or set replace_all")
    path.write_text(
        text.replace(old, new) if req.get("replace_all") else text.replace(old, new, 1), encoding="utf-8"
    )
    return {"replacements": count if req.get("replace_all") else 1}


def _untar(req: dict) -> dict:
    dest = Path(req["dest"])
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    data = base64.b64decode(req["data"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
        names = tar.getnames()
    # git archive puts everything under "<sha12>/": lift it up one level
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and (dest / next(iter(tops))).is_dir():
        top = dest / next(iter(tops))
        for child in top.iterdir():
            os.rename(child, dest / child.name)
        top.rmdir()
    return {"files": sum(1 for p in dest.rglob("*") if p.is_file()), "dest": str(dest)}


OPS = {"read": _read, "write": _write, "edit": _edit, "untar": _untar}


def main() -> int:
    try:
        req = json.loads(sys.stdin.read())
        out = OPS[req["op"]](req)
    except Exception as exc:  # noqa: BLE001 (every failure is reported to the model, not raised)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
