"""An exclusive lock between processes (and threads) that build the same cached file.

Why: two extractions may start at once (the lab prepares tasks while a researcher runs); both would
build the same multi-hundred-megabyte file. The second waits, then finds the first one's result. The
lock is ``flock`` on a private lock file beside the result, released when the holder exits, even if
it dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock
