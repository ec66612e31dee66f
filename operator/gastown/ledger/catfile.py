"""Reading objects from a cache repository: one `git cat-file --batch` kept per store.

Loose or packed, an object costs a line written and its bytes read back, never a process; a
reader that died (a signal, an OOM kill) is started again at the next read. GitPython did this
for us, at about 70 ms of imports in every process that reads the ledger.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from .errors import Unavailable


class CatFile:
    def __init__(self, repo: Path, env: Mapping[str, str]):
        self.repo, self.env = repo, dict(env)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def read(self, sha: bytes) -> bytes:
        """The content of the object named ``sha`` (binary); Unavailable when the cache lacks it."""
        with self._lock:
            for attempt in (1, 2):
                proc = self._started()
                try:
                    return _ask(proc.stdin, proc.stdout, sha.hex())  # type: ignore[arg-type]
                except (BrokenPipeError, EOFError):
                    self._stop()
                    if attempt == 2:
                        raise Unavailable(f"git cat-file stopped while reading {sha.hex()} from "
                                          f"{self.repo}") from None
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _started(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.repo, env=self.env,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
            proc.kill()
            proc.wait()


def _ask(stdin: IO[bytes], stdout: IO[bytes], name: str) -> bytes:
    stdin.write(f"{name}\n".encode())
    stdin.flush()
    header = stdout.readline()
    if not header.endswith(b"\n"):
        raise EOFError
    fields = header.split()
    if len(fields) != 3:  # "<name> missing" (or ambiguous)
        raise Unavailable(f"object {name} is missing from the ledger cache")
    size = int(fields[2])
    data = stdout.read(size + 1)  # the content, then a newline
    if len(data) != size + 1:
        raise EOFError
    return data[:size]
