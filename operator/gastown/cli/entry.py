"""`gt`'s entry point. It reads one command line itself: a bead create handed to the committer.

`gt bead create` is often run many times at once (a script filing work, agents splitting
theirs). A create on a rig given by path or URL is handed to the machine's committer
(``ledger/handoff.py``), and then importing click and what it pulls in (inspect, typing, enum)
costs the process about as much CPU as everything else it does. So ``main`` reads such a command
line without click, and gives any other one to click (``main.py``) as it is.

It reads only what click is sure to read the same way:
- ``gt bead [--rig R] [--actor A] [--cache-dir D] create TITLE [create's options]``, each
  option its own word (``--opt VALUE`` or ``--opt=VALUE``);
- values click accepts as they are: a type of ``TYPES``, a priority from 0 to 4, ``KEY=VALUE``
  metadata, a title ``check_title`` takes; no value that starts with ``-``;
- a rig that is not a town's rig name, and no ``--prefix``, ``--town`` or ``--``;
- none of the settings' variables set but GT_CACHE_DIR, so the settings are the defaults.
Anything else (help, a typo, a bad value) goes to click, which also says what is wrong.
tests/unit/test_cli_entry.py holds this reading to click's.

The rest of this module is what both ways share, light too: the fields of a create, handing it
off, the output and the error line.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # the names below are for mypy: importing typing costs a create several ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from typing import Any, NoReturn

# the kinds of bead a person creates (ledger.model.BeadType without merge-batch, which only the
# Refinery makes): spelled out so that a create loads no pydantic (tests/unit/test_cli_imports.py)
TYPES = ["task", "bug", "feature", "epic", "merge-request", "escalation", "convoy", "agent", "message"]
PRIORITIES = ("0", "1", "2", "3", "4")  # 0 is the most urgent; click's IntRange(0, 4) of these words
DEFAULT_TYPE, DEFAULT_PRIORITY = "task", 2
# a town's rig name: these, not starting with _ or - (a path would need a / to be a bare word)
RIG_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# what Settings.from_env reads (but GT_CACHE_DIR): set, they may change the create or stop it
# (tests/unit/test_cli_entry.py checks this against Settings)
SETTINGS_VARIABLES = (
    "GT_PATROL_SECONDS", "GT_DEACON_SECONDS", "GT_ORPHAN_GRACE_SECONDS", "GT_GIT_TIMEOUT", "GT_LEASE_SECONDS",
    "GT_POLL_BUSY_SECONDS", "GT_POLL_IDLE_SECONDS", "GT_RETRY_BASE_SECONDS", "GT_RETRY_MAX_SECONDS",
    "GT_ESCALATE_AFTER_ATTEMPTS", "GT_AGENT_IMAGE", "GT_RUNTIMES_CONFIGMAP", "POD_NAME", "POD_NAMESPACE",
    "GT_TOWN_LIMITS",
)
DEFAULT_GIT_TIMEOUT = 120.0  # Settings.git_timeout's default

# the options read here: option word -> keyword; `gt bead`'s, then `gt bead create`'s
GROUP_OPTIONS = {"--rig": "rig", "--actor": "actor", "--cache-dir": "cache_dir"}
CREATE_OPTIONS = {"-d": "description", "--description": "description", "-a": "acceptance",
                  "--acceptance": "acceptance", "-t": "type_", "--type": "type_", "-p": "priority",
                  "--priority": "priority", "-l": "labels", "--label": "labels", "--assignee": "assignee",
                  "--owner": "owner", "--parent": "parent", "--needs": "needs", "--meta": "meta",
                  "--rig": "rig_here"}
REPEATED = {"labels", "needs", "meta"}
CREATE_FLAGS = {"--json": "as_json"}


def main() -> None:
    """`gt`: a create handed off runs here; every other command line is click's."""
    found = read_create(sys.argv[1:], os.environ)
    if found is None:
        from .main import main as with_click

        with_click()
        return
    create_handed_off(**found)


def read_create(args: Sequence[str], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The keywords of ``create_handed_off`` that click would reach for ``gt ARGS`` in ``env``,
    or None: the command line is not one read here."""
    if args[:1] != ["bead"] or any(env.get(name) for name in SETTINGS_VARIABLES):
        return None
    group = _options(args[1:], GROUP_OPTIONS, command=False)
    if group is None or group[1][:1] != ["create"] or "" in group[0].values():
        return None
    given, rest = group
    create = _options(rest[1:], CREATE_OPTIONS, command=True)
    if create is None:
        return None
    values, words = create
    if len(words) != 1 or not _takes_title(words[0]):
        return None
    meta = [m.partition("=") for m in values.get("meta", [])]
    type_ = values.get("type_", DEFAULT_TYPE)
    priority = values.get("priority", str(DEFAULT_PRIORITY))
    if type_ not in TYPES or priority not in PRIORITIES or any(not key or not sep for key, sep, _ in meta):
        return None
    rig = values.get("rig_here") or given.get("rig") or env.get("GT_RIG") or "."
    if not handed_off(rig, prefix=None):
        return None
    return {"rig": rig, "cache_dir": given.get("cache_dir") or env.get("GT_CACHE_DIR") or None,
            "actor": given.get("actor") or env.get("GT_ACTOR") or None, "title": words[0],
            "fields": create_fields(description=values.get("description", ""),
                                    acceptance=values.get("acceptance", ""), type_=type_, priority=int(priority),
                                    labels=values.get("labels", ()), assignee=values.get("assignee"),
                                    owner=values.get("owner"), parent=values.get("parent"),
                                    needs=values.get("needs", ()), meta={k: v or None for k, _, v in meta}),
            "as_json": values.get("as_json", False), "git_timeout": DEFAULT_GIT_TIMEOUT}


def _options(args: Sequence[str], options: Mapping[str, str], *,
             command: bool) -> tuple[dict[str, Any], list[str]] | None:
    """The options of ``args`` and its other words; None at a word not read here. A group's
    options end at its first other word (the command's name); a command's may come before,
    between and after its arguments."""
    values: dict[str, Any] = {}
    words: list[str] = []
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if not word.startswith("-"):
            if not command:
                return values, [word, *rest]
            words.append(word)
            continue
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if command and name in CREATE_FLAGS and not eq:
            values[CREATE_FLAGS[name]] = True
            continue
        if name not in options:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if value.startswith("-"):
            return None
        key = options[name]
        if key in REPEATED:
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    return values, words


def _takes_title(title: str) -> bool:
    from ..ledger.errors import LedgerError
    from ..ledger.handoff import check_title

    try:
        check_title(title)
    except LedgerError:
        return False
    return True


def handed_off(rig: str, *, prefix: str | None) -> bool:
    """Whether a create on ``rig`` is handed to the machine's committer: a rig by path or URL
    with no prefix to check (a town's rig, or a prefix, need a Ledger of the process)."""
    is_name = rig[:1] not in ("", "_", "-") and set(rig) <= RIG_NAME_CHARS  # (not re: 8 ms of CPU to load)
    return prefix is None and not is_name


def create_fields(*, description: str, acceptance: str, type_: str, priority: int, labels: Sequence[str],
                  assignee: str | None, owner: str | None, parent: str | None, needs: Sequence[str],
                  meta: Mapping[str, str | None]) -> dict[str, Any]:
    """The keywords of ``Ledger.create`` for a create's options (``meta``: None removes a key)."""
    return {"type": type_, "description": description, "acceptance": acceptance, "priority": priority,
            "labels": tuple(labels), "assignee": assignee or None, "owner": owner or None, "parent": parent,
            "deps": [(n, "blocks") for n in needs], "metadata": {k: v for k, v in meta.items() if v is not None}}


def create_handed_off(*, rig: str, cache_dir: str | Path | None, actor: str | None, title: str,
                      fields: dict[str, Any], as_json: bool, git_timeout: float) -> None:
    """Hand the create to the machine's committer, wait until it is on the remote, print the new
    bead's ID (or the bead as JSON)."""
    from ..ledger.errors import LedgerError
    from ..ledger.handoff import (
        Create,
        cache_dir_for,
        create_seed,
        default_actor,
        hand_off,
        normalise_remote,
    )

    actor = actor or default_actor()
    remote = normalise_remote(rig)
    cache = cache_dir_for(remote, cache_dir or None)
    seed = create_seed(title, fields["description"], actor)
    try:
        bead = hand_off(remote, cache, Create(actor, title, seed, fields), git_timeout=git_timeout)
    except LedgerError as e:
        fail(e)
    print(json_text(bead) if as_json else bead["id"], flush=True)


def json_text(data: Any) -> str:
    """What `--json` prints."""
    import json

    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def fail(err: object) -> NoReturn:
    """The one line of a failed command, on stderr, and exit status 1."""
    print(f"gt: error: {err}", file=sys.stderr, flush=True)
    sys.exit(1)
