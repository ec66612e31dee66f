"""`gt`'s entry point. It reads a few command lines itself: a bead create, close, reopen or
comment handed to the committer.

`gt bead create` is often run many times at once (a script filing work, agents splitting
theirs), and agents close a formula's steps and comment with `gt bead close` and `comment`. On
a rig given by path or URL these writes are handed to the machine's committer
(``ledger/handoff.py``), and then importing click and what it pulls in (inspect, typing, enum)
costs the process about as much CPU as everything else it does. So ``main`` reads such a command
line without click, and gives any other one to click (``main.py``) as it is.

It reads only what click is sure to read the same way:
- ``gt bead [--rig R] [--actor A] [--cache-dir D] create TITLE [create's options]``,
  ``... close|reopen ID [-r REASON]`` and ``... comment ID TEXT``, each option its own word
  (``--opt VALUE`` or ``--opt=VALUE``);
- values click accepts as they are: a type of ``TYPES``, a priority from 0 to 4, ``KEY=VALUE``
  metadata, a title ``check_title`` takes; no value that starts with ``-``, no empty word;
- a rig that is not a town's rig name, and no ``--prefix``, ``--town`` or ``--``;
- none of the settings' variables set but GT_CACHE_DIR, so the settings are the defaults.
Anything else (help, a typo, a bad value) goes to click, which also says what is wrong.
tests/unit/test_cli_entry.py holds this reading to click's.

The rest of this module is what both ways share, light too: the fields of a create, handing a
write off, the output and the error line.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # the names below are for mypy: importing typing costs a create several ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
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
FLAGS = {"--json": "as_json"}
# `gt bead close|reopen ID [-r REASON]` and `gt bead comment ID TEXT`: their options, their words
REASON = {"-r": "text", "--reason": "text", "--rig": "rig_here"}
CHANGE_OPTIONS = {"close": REASON, "reopen": REASON, "comment": {"--rig": "rig_here"}}
CHANGE_WORDS = {"close": 1, "reopen": 1, "comment": 2}


def main() -> None:
    """`gt`: a create or a change handed off runs here; every other command line is click's."""
    args = sys.argv[1:]
    if (create := read_create(args, os.environ)) is not None:
        create_handed_off(**create)
    elif (change := read_change(args, os.environ)) is not None:
        change_handed_off(**change)
    else:
        from .main import main as with_click

        with_click()


def _command(args: Sequence[str], env: Mapping[str, str], options: Mapping[str, Mapping[str, str]],
             ) -> tuple[str, dict[str, Any], dict[str, Any], list[str]] | None:
    """`gt bead [GROUP OPTIONS] COMMAND [...]` for a COMMAND of ``options``, read as click would:
    the command, the group's options, the command's options and its words (None: not read here)."""
    if args[:1] != ["bead"] or any(env.get(name) for name in SETTINGS_VARIABLES):
        return None
    group = _options(args[1:], GROUP_OPTIONS, command=False)
    if group is None or not group[1] or group[1][0] not in options or "" in group[0].values():
        return None
    given, (name, *rest) = group
    found = _options(rest, options[name], command=True)
    return None if found is None else (name, given, *found)


def _where(given: Mapping[str, Any], values: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The rig, cache and actor of a command handed off (None: a town's rig, which is not)."""
    rig = values.get("rig_here") or given.get("rig") or env.get("GT_RIG") or "."
    if not handed_off(rig, prefix=None):
        return None
    return {"rig": rig, "cache_dir": given.get("cache_dir") or env.get("GT_CACHE_DIR") or None,
            "actor": given.get("actor") or env.get("GT_ACTOR") or None, "as_json": values.get("as_json", False),
            "git_timeout": DEFAULT_GIT_TIMEOUT}


def read_change(args: Sequence[str], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The keywords of ``change_handed_off`` that click would reach for ``gt ARGS`` in ``env``,
    or None: the command line is not one read here."""
    found = _command(args, env, CHANGE_OPTIONS)
    if found is None:
        return None
    kind, given, values, words = found
    where = _where(given, values, env)
    if where is None or len(words) != CHANGE_WORDS[kind] or "" in words:
        return None
    return {"kind": kind, **where, "bead_id": words[0], "text": words[1] if kind == "comment" else values.get("text", "")}


def read_create(args: Sequence[str], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The keywords of ``create_handed_off`` that click would reach for ``gt ARGS`` in ``env``,
    or None: the command line is not one read here."""
    found = _command(args, env, {"create": CREATE_OPTIONS})
    if found is None:
        return None
    _, given, values, words = found
    if len(words) != 1 or not _takes_title(words[0]):
        return None
    meta = [m.partition("=") for m in values.get("meta", [])]
    type_ = values.get("type_", DEFAULT_TYPE)
    priority = values.get("priority", str(DEFAULT_PRIORITY))
    if type_ not in TYPES or priority not in PRIORITIES or any(not key or not sep for key, sep, _ in meta):
        return None
    where = _where(given, values, env)
    if where is None:
        return None
    return {**where, "title": words[0],
            "fields": create_fields(description=values.get("description", ""),
                                    acceptance=values.get("acceptance", ""), type_=type_, priority=int(priority),
                                    labels=values.get("labels", ()), assignee=values.get("assignee"),
                                    owner=values.get("owner"), parent=values.get("parent"),
                                    needs=values.get("needs", ()), meta={k: v or None for k, _, v in meta})}


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
        if command and name in FLAGS and not eq:
            values[FLAGS[name]] = True
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
    from ..ledger.handoff import Create, create_seed

    bead = _handed_off(lambda actor: Create(actor, title, create_seed(title, fields["description"], actor), fields),
                       rig=rig, cache_dir=cache_dir, actor=actor, git_timeout=git_timeout)
    print(json_text(bead) if as_json else bead["id"], flush=True)


def change_handed_off(*, kind: str, rig: str, cache_dir: str | Path | None, actor: str | None, bead_id: str,
                      text: str, as_json: bool, git_timeout: float) -> None:
    """Hand `gt bead close|reopen|comment` to the machine's committer, wait until it is on the
    remote, print what the command prints."""
    from ..ledger.handoff import Change

    bead = _handed_off(lambda actor: Change(kind, actor, bead_id, text), rig=rig, cache_dir=cache_dir, actor=actor,
                       git_timeout=git_timeout)
    print(changed_text(kind, bead, as_json=as_json), flush=True)


def _handed_off(op_by: Callable[[str], Any], *, rig: str, cache_dir: str | Path | None, actor: str | None,
                git_timeout: float) -> Any:
    """The outcome of the write ``op_by(actor)`` made on ``rig`` by the machine's committer."""
    from ..ledger.errors import LedgerError
    from ..ledger.handoff import cache_dir_for, default_actor, hand_off, normalise_remote

    remote = normalise_remote(rig)
    try:
        return hand_off(remote, cache_dir_for(remote, cache_dir or None), op_by(actor or default_actor()),
                        git_timeout=git_timeout)
    except LedgerError as e:
        fail(e)


def changed_text(kind: str, bead: Mapping[str, Any], *, as_json: bool) -> str:
    """What `gt bead KIND` prints (a close, a reopen, a comment), from the bead as JSON data."""
    if kind == "comment":
        return json_text(bead["comments"][-1]) if as_json else f"{bead['id']}: {len(bead['comments'])} comments"
    return json_text(bead) if as_json else bead_row(bead)


def bead_row(bead: Mapping[str, Any]) -> str:
    """A bead on one line, as `gt bead list` shows it (``bead``: its fields as JSON data)."""
    who = bead.get("assignee") or "-"
    return f"{bead['id']:<14} {bead['status']:<11} P{bead['priority']} {bead['type']:<13} {who:<18} {bead['title']}"


def json_text(data: Any) -> str:
    """What `--json` prints."""
    import json

    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def fail(err: object) -> NoReturn:
    """The one line of a failed command, on stderr, and exit status 1."""
    print(f"gt: error: {err}", file=sys.stderr, flush=True)
    sys.exit(1)
