"""The settings of a gastown process: read once from the environment, validated, one cache rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown import __version__
from gastown.cachedir import cache_root
from gastown.ledger.ledger import default_cache_dir
from gastown.rigloop import Cadence
from gastown.settings import Settings, SettingsError


def test_defaults_without_any_variable(tmp_path):
    s = Settings.from_env({"HOME": str(tmp_path)})
    assert (s.patrol_seconds, s.deacon_seconds, s.orphan_grace_seconds, s.git_timeout) == (30, 60, 120, 120)
    assert s.agent_image == f"gastown/agent:{__version__}" and s.runtimes_configmap is None


def test_the_environment_sets_each_tunable():
    s = Settings.from_env({"GT_PATROL_SECONDS": "1", "GT_DEACON_SECONDS": "2.5", "GT_ORPHAN_GRACE_SECONDS": "0",
                           "GT_GIT_TIMEOUT": "9", "GT_AGENT_IMAGE": "reg/agent:1", "GT_RUNTIMES_CONFIGMAP": "rt",
                           "POD_NAME": "op-0", "GT_CACHE_DIR": "/var/cache/gt"})
    assert (s.patrol_seconds, s.deacon_seconds, s.orphan_grace_seconds, s.git_timeout) == (1, 2.5, 0, 9)
    assert (s.agent_image, s.runtimes_configmap, s.pod_name) == ("reg/agent:1", "rt", "op-0")
    assert s.cache_dir == Path("/var/cache/gt")


@pytest.mark.parametrize(("var", "value", "says"), [
    ("GT_PATROL_SECONDS", "soon", "must be a number of seconds"),
    ("GT_DEACON_SECONDS", "0", "must be a positive number"),
    ("GT_GIT_TIMEOUT", "-1", "must be a positive number"),
    ("GT_ORPHAN_GRACE_SECONDS", "-5", "must be 0 or more"),
    ("GT_PATROL_SECONDS", "nan", "must be a positive number"),
])
def test_a_bad_value_names_its_variable(var, value, says):
    with pytest.raises(SettingsError, match=f"{var} {says}"):
        Settings.from_env({var: value})


def test_one_cache_rule_for_every_ledger_cache(tmp_path):
    assert cache_root({"GT_CACHE_DIR": "/c"}) == "/c"
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == "/x/gastown"
    assert cache_root({}) == str(Path.home() / ".cache" / "gastown")
    assert default_cache_dir("/some/repo", tmp_path).parent == tmp_path / "ledgers"


def test_a_towns_settings_come_under_the_environment_and_flags():
    config = {"leaseSeconds": 60, "gitTimeout": "300", "patrolSeconds": 5}
    s = Settings.from_env({"GT_PATROL_SECONDS": "7"}, config=config, git_timeout=30.0)
    assert (s.lease_seconds, s.git_timeout, s.patrol_seconds) == (60, 30, 7)


@pytest.mark.parametrize(("config", "says"), [
    ({"leaseSecs": 1}, "settings.leaseSecs is not a setting; the settings are: agentImage, deaconSeconds"),
    ({"leaseSeconds": "soon"}, "settings.leaseSeconds must be a number of seconds"),
    ({"leaseSeconds": True}, "settings.leaseSeconds must be a number of seconds"),
    ({"leaseSeconds": 0}, "GT_LEASE_SECONDS must be a positive number"),
])
def test_a_bad_town_setting_says_which(config, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({}, config=config)


def test_the_poll_bounds_are_settings_and_an_idle_rig_waits_at_most_a_third_of_the_lease():
    s = Settings.from_env({}, {"pollIdleSeconds": 90, "pollBusySeconds": "0.5"})
    assert (s.poll_busy_seconds, s.poll_idle_seconds) == (0.5, 90.0)
    with pytest.raises(SettingsError, match="GT_POLL_IDLE_SECONDS .2.0. must be at least GT_POLL_BUSY_SECONDS"):
        Settings.from_env({"GT_POLL_IDLE_SECONDS": "2", "GT_POLL_BUSY_SECONDS": "3"})
    cadence = Cadence.of(s, poll=s.poll_busy_seconds, period=2, idle=s.poll_idle_seconds)
    waits = [cadence.poll]
    for _ in range(10):
        waits.append(cadence.slower(waits[-1]))
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and max(waits) == s.lease_seconds / 3  # 40 s: the claim renews in time
    assert Cadence.of(s, poll=2, period=30).slower(2) == 2  # no idle cap: always the poll
