"""Merging code branches without a work tree: ``git merge-tree`` in the ledger's bare cache.

Both drivers use it (the operator has no checkout, the local daemon needs none), and so does
the Refinery when it stacks merge requests. Pushes are compare-and-swap on the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import Unavailable
from .gitrun import first_line, run_git
from .gitstore import GitStore, Signature

HEADS = "refs/gastown/heads"


@dataclass
class MergeResult:
    commit: str | None  # the merge commit, None on conflict
    base: str  # the target tip it was built on
    conflicts: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.commit is not None


class Branches:
    """The rig's code branches, fetched into the ledger's bare cache on demand."""

    def __init__(self, store: GitStore):
        self.store = store

    def fetch(self, *branches: str) -> dict[str, str | None]:
        """Bring ``branches`` into the cache; their tips, None for a branch the remote lacks."""
        tips = self.remote_tips(*branches)
        with self.store.locked():  # see GitStore.ensure: a fetch under way is not a complete one
            self._fetch([b for b, tip in tips.items() if tip and not self.store.has(tip)])
        return tips

    def _fetch(self, wanted: list[str]) -> None:
        if wanted:
            specs = [f"+refs/heads/{b}:{HEADS}/{b}" for b in wanted]
            proc = run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.store.remote, *specs],
                           repo=self.store.cache, check=False, env=self.store.env)
            if proc.returncode != 0:
                raise Unavailable(f"cannot fetch {', '.join(wanted)} from {self.store.remote}: "
                                  f"{first_line(proc.stderr)}")

    def remote_tips(self, *branches: str) -> dict[str, str | None]:
        proc = run_git(["ls-remote", "--heads", "--", self.store.remote, *branches], repo=self.store.cache,
                       check=False, env=self.store.env)
        if proc.returncode != 0:
            raise Unavailable(f"cannot reach {self.store.remote}: {first_line(proc.stderr)}")
        found = {}
        for line in proc.stdout.decode().splitlines():
            sha, ref = line.split()
            found[ref.removeprefix("refs/heads/")] = sha
        return {b: found.get(b) for b in branches}

    def remote_refs(self, prefix: str) -> dict[str, str]:
        """The remote's refs under ``prefix`` (refs/...), by full name."""
        proc = run_git(["ls-remote", "--", self.store.remote, f"{prefix}/*"], repo=self.store.cache, check=False,
                       env=self.store.env)
        if proc.returncode != 0:
            raise Unavailable(f"cannot reach {self.store.remote}: {first_line(proc.stderr)}")
        return {ref: sha for sha, ref in (line.split() for line in proc.stdout.decode().splitlines())}

    def files(self, commit: str, directory: str) -> dict[str, bytes]:
        """The files directly in ``directory`` at ``commit`` (empty when there is none)."""
        proc = run_git(["ls-tree", "-z", f"{commit}:{directory}"], repo=self.store.cache, check=False)
        out = {}
        for entry in proc.stdout.split(b"\0") if proc.returncode == 0 else []:
            if not entry:
                continue
            meta, name = entry.split(b"\t", 1)
            mode, kind, sha = meta.split()
            if kind == b"blob":
                out[name.decode()] = self.store.read_object(bytes.fromhex(sha.decode()))
        return out

    def merge(self, base: str, head: str, message: str, author: Signature) -> MergeResult:
        """Merge ``head`` into ``base`` (commits): a two-parent commit, or the conflicting files."""
        if self.store.is_ancestor(head, base):
            return MergeResult(base, base)  # already in: nothing to merge
        proc = run_git(["merge-tree", "--write-tree", "--name-only", "--no-messages", base, head],
                       repo=self.store.cache, check=False)
        out = proc.stdout.decode().splitlines()
        if proc.returncode == 1:
            return MergeResult(None, base, [f for f in out[1:] if f])
        if proc.returncode != 0:
            raise Unavailable(f"git merge-tree failed: {first_line(proc.stderr)}")
        return MergeResult(self.store.commit_tree(out[0], [base, head], message, author), base)

    def push(self, commit: str, branch: str, expected: str | None) -> bool:
        """Move ``branch`` to ``commit`` if it is still at ``expected``; False when it moved."""
        return self.store.swap_ref(f"refs/heads/{branch}", commit, expected)

    def push_refs(self, commits: Mapping[str, str]) -> None:
        """Publish each commit as its ref (scratch refs outside refs/heads) on the remote, in one push."""
        if not commits:
            return
        proc = run_git(["push", "--quiet", "--force", self.store.remote, *[f"{c}:{r}" for r, c in commits.items()]],
                       repo=self.store.cache, check=False, env=self.store.env)
        if proc.returncode != 0:
            raise Unavailable(f"cannot push {', '.join(commits)} to {self.store.remote}: {first_line(proc.stderr)}")

    def fetch_ref(self, ref: str) -> bool:
        """Bring the remote's ``ref`` into the cache; False when the remote lacks it."""
        proc = run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.store.remote, f"+{ref}:{ref}"],
                       repo=self.store.cache, check=False, env=self.store.env)
        return proc.returncode == 0

    def delete_refs(self, *refs: str) -> None:
        """Best effort: scratch refs that are no longer needed."""
        if refs:
            run_git(["push", "--quiet", self.store.remote, *[f":{r}" for r in refs]], repo=self.store.cache,
                    check=False, env=self.store.env)

    def delete(self, branch: str, expected: str | None = None) -> bool:
        """Delete ``branch`` on the remote if it is still at ``expected``; False when it was not deleted."""
        lease = f"--force-with-lease=refs/heads/{branch}:{expected}" if expected else "--force"
        return run_git(["push", "--quiet", lease, self.store.remote, f":refs/heads/{branch}"], repo=self.store.cache,
                       check=False, env=self.store.env).returncode == 0

    def delete_all(self, tips: Mapping[str, str], *refs: str) -> None:
        """Best effort, in one push: each branch of ``tips`` deleted if it is still at its commit (one
        that moved is kept), and the scratch ``refs``."""
        if tips or refs:
            run_git(["push", "--quiet", *[f"--force-with-lease=refs/heads/{b}:{c}" for b, c in tips.items()],
                     self.store.remote, *[f":refs/heads/{b}" for b in tips], *[f":{r}" for r in refs]],
                    repo=self.store.cache, check=False, env=self.store.env)

    def merge_into(self, branch: str, target: str, message: str, author: Signature,
                   *, attempts: int = 10) -> MergeResult:
        """Merge the remote ``branch`` into ``target`` and push it; rebuilt if the target moves."""
        for _ in range(attempts):
            tips = self.fetch(target, branch)
            if tips[branch] is None:
                raise Unavailable(f"branch {branch} is not on {self.store.remote}")
            if tips[target] is None:
                raise Unavailable(f"target branch {target} is not on {self.store.remote}")
            result = self.merge(tips[target], tips[branch], message, author)  # type: ignore[arg-type]
            if not result.clean or result.commit == tips[target]:
                return result
            if self.push(result.commit, target, tips[target]):  # type: ignore[arg-type]
                return result
        raise Unavailable(f"{target} kept moving during {attempts} merge attempts")
