"""Format 1 (every record flat in beads/<id>.json) to format 2 (fanned out): a ledger written the
old way, with plain git as the old release did, read and migrated in place by this release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gastown.ledger import LEDGER_BRANCH, InvalidOperation, Ledger
from gastown.ledger.gitstore import MIGRATION
from gastown.ledger.layout import ARCHIVE_DIR, BEADS_DIR, record_path
from gastown.ledger.ops import Create

from conftest import GT

REPO = Path(__file__).resolve().parents[2]
FORMAT_1_RELEASE = "63e6013"  # the last commit whose gastown reads and writes format 1 only


def git(*args, cwd=None, env=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout


def record(bead_id: str, title: str, status: str = "open", **extra) -> str:
    body = {"id": bead_id, "title": title, "status": status, "type": "task", "priority": 2,
            "created_by": "user bob", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", **extra}
    return json.dumps(body, sort_keys=True, indent=2) + "\n"


def commit(work: Path, message: str) -> None:
    git("add", "-A", cwd=work)
    git("-c", "user.name=user bob", "-c", "user.email=bob@x", "commit", "--quiet", "-m", message, cwd=work)


@pytest.fixture
def old_ledger(tmp_path) -> Path:
    """A format-1 ledger as the old release left it: three commits, one bead archived."""
    remote = tmp_path / "rig.git"
    git("init", "--quiet", "--bare", str(remote))
    work = tmp_path / "work"
    git("init", "--quiet", f"--initial-branch={LEDGER_BRANCH}", str(work))
    (work / "beads").mkdir()
    (work / "ledger.json").write_text(json.dumps({"format": 1, "prefix": "wa"}, sort_keys=True) + "\n")
    (work / "beads" / "wa-aaa.json").write_text(record("wa-aaa", "Build API"))
    (work / "beads" / "wa-old.json").write_text(record("wa-old", "Old note", "closed"))
    commit(work, 'ledger: 2 changes\n\nbead wa-aaa: created task "Build API" (user bob)\n'
                 'bead wa-old: created task "Old note" (user bob)')
    (work / "beads" / "wa-aaa.json").write_text(record("wa-aaa", "Build API", "in_progress"))
    (work / "beads" / "wa-bbb.json").write_text(record("wa-bbb", "Docs", dependencies=[{"id": "wa-aaa",
                                                                                       "type": "blocks"}]))
    commit(work, 'ledger: 2 changes\n\nbead wa-aaa: open -> in_progress (user bob)\n'
                 'bead wa-bbb: created task "Docs" (user bob)')
    (work / "archive").mkdir()
    git("mv", "beads/wa-old.json", "archive/wa-old.json", cwd=work)
    commit(work, "bead wa-old: archived (dogs)")
    git("push", "--quiet", str(remote), LEDGER_BRANCH, cwd=work)
    return remote


def tree(remote: Path) -> list[str]:
    return git("ls-tree", "-r", "--name-only", LEDGER_BRANCH, cwd=remote).split()


def test_an_old_ledger_is_read_as_it_is_and_migrated_by_the_first_write(old_ledger, tmp_path):
    old_tip = git("rev-parse", LEDGER_BRANCH, cwd=old_ledger).strip()
    with Ledger(str(old_ledger), cache_dir=tmp_path / "cache", actor="user alice") as lg:
        assert set(lg.beads()) == {"wa-aaa", "wa-bbb"} and lg.prefix == "wa"
        assert lg.get("wa-old").title == "Old note"  # archived, still readable
        assert git("rev-parse", LEDGER_BRANCH, cwd=old_ledger).strip() == old_tip  # reading wrote nothing

        new = lg.create("After the upgrade")
        with pytest.raises(InvalidOperation, match="already exists"):  # archived IDs are still reserved
            lg.apply(Create(title="again", actor="t", seed="s", bead_id="wa-old"))
        lg.update("wa-aaa", status="closed")

        # one commit on the old tip did the migration, with the write that triggered it
        first = git("rev-list", "--reverse", f"{old_tip}..{LEDGER_BRANCH}", cwd=old_ledger).split()[0]
        assert git("rev-parse", f"{first}^", cwd=old_ledger).strip() == old_tip
        body = git("log", "-1", "--format=%B", first, cwd=old_ledger)
        assert body.startswith(f"bead {new.id}: created task") and MIGRATION in body
        assert sorted(tree(old_ledger)) == sorted(
            [record_path(BEADS_DIR, i) for i in ("wa-aaa", "wa-bbb", new.id)]
            + [record_path(ARCHIVE_DIR, "wa-old"), "ledger.json"])
        config = json.loads(git("show", f"{LEDGER_BRANCH}:ledger.json", cwd=old_ledger))
        assert config["format"] == 2 and config["id_prefix"] == "wa"

        # a bead's history follows it across the move
        assert [h.change for h in lg.history("wa-aaa")] == [
            'created task "Build API" (user bob)', "open -> in_progress (user bob)",
            "in_progress -> closed (user alice)"]
        assert [h.change for h in lg.history("wa-old")][-1] == "archived (dogs)"

    with Ledger(str(old_ledger), cache_dir=tmp_path / "fresh") as fresh:  # another reader, from git alone
        assert set(fresh.beads()) == {"wa-aaa", "wa-bbb", new.id}
        assert fresh.get("wa-bbb").deps() == ["wa-aaa"] and fresh.get("wa-old").status == "closed"


def test_gt_bead_migrate_migrates_once_in_one_commit(old_ledger, tmp_path):
    env = {**os.environ, "GT_RIG": str(old_ledger), "GT_CACHE_DIR": str(tmp_path / "cache"), "GT_ACTOR": "user ops"}
    before = int(git("rev-list", "--count", LEDGER_BRANCH, cwd=old_ledger))
    out = subprocess.run([GT, "bead", "migrate"], capture_output=True, text=True, env=env, check=True).stdout
    assert "migrated the ledger" in out and "format 2" in out
    assert int(git("rev-list", "--count", LEDGER_BRANCH, cwd=old_ledger)) == before + 1
    assert git("log", "-1", "--format=%s", LEDGER_BRANCH, cwd=old_ledger).strip() == f"{MIGRATION} (user ops)"
    assert "beads/wa-aaa.json" not in tree(old_ledger) and record_path(BEADS_DIR, "wa-aaa") in tree(old_ledger)
    again = subprocess.run([GT, "bead", "migrate"], capture_output=True, text=True, env=env, check=True).stdout
    assert "nothing to do" in again
    assert int(git("rev-list", "--count", LEDGER_BRANCH, cwd=old_ledger)) == before + 1


def test_the_old_release_refuses_a_migrated_ledger_instead_of_seeing_no_beads(old_ledger, tmp_path):
    """Today's readers exist in the wild: run the format-1 release's own code against the ledger."""
    old_code = tmp_path / "old"
    proc = subprocess.run(["git", "archive", "--format=tar", FORMAT_1_RELEASE, "operator/gastown"], cwd=REPO,
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"the format-1 release {FORMAT_1_RELEASE} is not in this clone's history")
    old_code.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old_code)], input=proc.stdout, check=True)
    script = ("import sys\nfrom gastown.ledger import Ledger, LedgerError\n"
              "lg = Ledger(sys.argv[1], cache_dir=sys.argv[2], actor='old')\n"
              "for what in (lambda: sorted(lg.beads()), lambda: lg.create('from an old gt').id):\n"
              "    try:\n        print('OK', what())\n"
              "    except LedgerError as e:\n        print('REFUSED', type(e).__name__, e)\n")

    def old_gt(cache: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", script, str(old_ledger), str(tmp_path / cache)],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(old_code / "operator")})
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    assert old_gt("c1")[0] == "OK ['wa-aaa', 'wa-bbb']"  # the old release on its own format: works
    with Ledger(str(old_ledger), cache_dir=tmp_path / "new") as lg:
        lg.migrate()
        tip = lg.tip
    lines = old_gt("c2")
    assert len(lines) == 2 and all(ln.startswith("REFUSED CorruptRecord ledger.json at commit") for ln in lines)
    assert git("rev-parse", LEDGER_BRANCH, cwd=old_ledger).strip() == tip  # and it wrote nothing


def test_a_newer_format_is_refused_with_a_clear_message(tmp_path):
    remote = tmp_path / "rig.git"
    git("init", "--quiet", "--bare", str(remote))
    work = tmp_path / "work"
    git("init", "--quiet", f"--initial-branch={LEDGER_BRANCH}", str(work))
    (work / "ledger.json").write_text(json.dumps({"format": 3, "id_prefix": "wa"}))
    commit(work, "from the future")
    git("push", "--quiet", str(remote), LEDGER_BRANCH, cwd=work)
    env = {**os.environ, "GT_RIG": str(remote), "GT_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([GT, "bead", "list"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "the ledger is in format 3, and this gastown reads formats 1, 2: upgrade gastown" in proc.stderr
