"""Where the records live in the ledger's tree, and how a tree is edited without rewriting it.

Format 2 (this release) fans the records out by a hash of their ID, one hex digit per level:
``beads/<h0>/<h1>/<id>.json`` with ``h = sha1(id)``; the archive likewise. A write rewrites
its record's leaf directory and the directories above it (a few hundred bytes each), never a
directory of every bead, so its cost and the remote's growth stay flat as the ledger grows.
Format 1 (before) kept every record flat in ``beads/<id>.json``; it is still read, and the
first write by this release migrates it (``Layout.migrated``).

Trees are read through a cache keyed by their SHA: an unchanged subtree is never read twice,
so a new tip costs only the directories it changed.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import UnsupportedFormat

FILE, TREE = 0o100644, 0o040000
FORMAT = 2  # what this release writes
LEVELS = {1: 0, 2: 2}  # format -> directory levels between ``beads/`` and a record
BEADS_DIR, ARCHIVE_DIR = "beads", "archive"

Entries = dict[str, tuple[bytes, int]]  # name -> (binary sha, mode), one tree


def shard(bead_id: str, levels: int) -> tuple[str, ...]:
    digest = hashlib.sha1(bead_id.encode()).hexdigest()  # noqa: S324 (a spread, not a secret)
    return tuple(digest[:levels])


def record_path(directory: str, bead_id: str, fmt: int = FORMAT) -> str:
    return "/".join((directory, *shard(bead_id, LEVELS[fmt]), f"{bead_id}.json"))


def record_paths(bead_id: str) -> list[str]:
    """Every path a bead's record ever had, live or archived, in every format (for its history)."""
    return [record_path(d, bead_id, f) for f in sorted(LEVELS) for d in (BEADS_DIR, ARCHIVE_DIR)]


def parse_tree(data: bytes) -> Entries:
    """A tree object's entries: git writes each as ``<mode in octal> <name>\\0<20-byte sha>``."""
    out: Entries = {}
    at = 0
    while at < len(data):
        space = data.index(b" ", at)
        nul = data.index(b"\0", space)
        out[data[space + 1:nul].decode()] = (data[nul + 1:nul + 21], int(data[at:space], 8))
        at = nul + 21
    return out


class Trees:
    """Read and write git trees through an object store, with a cache of the ones read."""

    def __init__(self, read: Callable[[bytes], bytes], write: Callable[[str, bytes], bytes], limit: int = 20_000):
        self._read, self._write, self.limit = read, write, limit
        self._entries: OrderedDict[bytes, Entries] = OrderedDict()
        self._flat: OrderedDict[tuple[bytes, int], dict[str, bytes]] = OrderedDict()

    def entries(self, sha: bytes) -> Entries:
        got = self._entries.get(sha)
        if got is None:
            got = parse_tree(self._read(sha))
            self._keep(self._entries, sha, got)
        return got

    def write(self, entries: Mapping[str, tuple[bytes, int]]) -> bytes:
        # git orders tree entries by name, directories compared as if they ended in '/'
        ordered = sorted(entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][1] == TREE else ""))
        sha = self._write("tree", b"".join(b"%o %s\0%s" % (mode, name.encode(), child)
                                           for name, (child, mode) in ordered))
        self._keep(self._entries, sha, dict(entries))
        return sha

    def records(self, sha: bytes | None, levels: int) -> dict[str, bytes]:
        """bead id -> record blob, for a records directory with ``levels`` fan-out levels."""
        if sha is None:
            return {}
        got = self._flat.get((sha, levels))
        if got is None:
            got = {}
            for name, (child, mode) in self.entries(sha).items():
                if levels == 0 and mode != TREE and name.endswith(".json"):
                    got[name[:-5]] = child
                elif levels > 0 and mode == TREE:
                    got.update(self.records(child, levels - 1))
            self._keep(self._flat, (sha, levels), got)
        return got

    def edit(self, sha: bytes | None, levels: int, changes: Mapping[str, bytes | None],
             depth: int = 0) -> bytes | None:
        """The records directory ``sha`` with ``changes`` (bead id -> blob, None: removed); only
        the directories on the changed records' paths are written. None: the directory is empty."""
        entries = dict(self.entries(sha)) if sha is not None else {}
        if depth == levels:
            for bead_id, blob in changes.items():
                if blob is None:
                    entries.pop(f"{bead_id}.json", None)
                else:
                    entries[f"{bead_id}.json"] = (blob, FILE)
        else:
            groups: dict[str, dict[str, bytes | None]] = {}
            for bead_id, blob in changes.items():
                groups.setdefault(shard(bead_id, levels)[depth], {})[bead_id] = blob
            for key, group in groups.items():
                child = self.edit(entries[key][0] if key in entries else None, levels, group, depth + 1)
                if child is None:
                    entries.pop(key, None)
                else:
                    entries[key] = (child, TREE)
        return self.write(entries) if entries else None

    def _keep(self, cache: OrderedDict, key, value) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.limit:
            cache.popitem(last=False)


@dataclass(frozen=True)
class Config:
    """``ledger.json``: the format and the ID prefix."""

    format: int
    prefix: str

    def to_json(self) -> bytes:
        # format 2 names the prefix "id_prefix": a reader of format 1 looks for "prefix" and so
        # refuses a format-2 ledger (CorruptRecord on ledger.json) instead of seeing no beads
        body = {"format": self.format, "id_prefix": self.prefix,
                "layout": "beads/<h0>/<h1>/<id>.json, archive/ likewise: h = sha1(id) in hex",
                "note": "format 2: gastown releases that read only format 1 refuse this ledger; upgrade them"}
        return json.dumps(body, sort_keys=True, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Config:
        """Raises ValueError (what is wrong) for a broken config, UnsupportedFormat for a newer one."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        fmt = data.get("format", 1)
        if fmt not in LEVELS:
            raise UnsupportedFormat(f"the ledger is in format {fmt!r}, and this gastown reads formats "
                                    f"{', '.join(map(str, sorted(LEVELS)))}: upgrade gastown")
        prefix = data.get("prefix" if fmt == 1 else "id_prefix")
        if not isinstance(prefix, str):
            raise ValueError("no ID prefix")
        return cls(fmt, prefix)
