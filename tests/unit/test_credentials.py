"""Git credentials reach git through its environment only, and git really uses them."""

from __future__ import annotations

import os
import stat
import subprocess

from gastown.ledger.credentials import GitCredentials
from gastown.ledger.gitrun import git_env


def test_https_credentials_answer_git_credential_fill(tmp_path):
    creds = GitCredentials.from_secret_data({"username": "bot", "password": "s3cr3t-token"})
    env = {**git_env(), **creds.env(tmp_path)}
    out = subprocess.run(["git", "credential", "fill"], input="protocol=https\nhost=git.example.com\n\n",
                         capture_output=True, text=True, env=env, check=True, cwd=tmp_path).stdout
    assert "username=bot" in out and "password=s3cr3t-token" in out
    assert "s3cr3t" not in env["GIT_CONFIG_VALUE_0"]  # the helper text holds no secret


def test_ssh_key_is_private_and_named_in_the_ssh_command(tmp_path):
    env = GitCredentials(ssh_key="-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----").env(
        tmp_path / "home")
    key = tmp_path / "home" / "ssh-key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert f"-i {key}" in env["GIT_SSH_COMMAND"] and "GIT_PASSWORD" not in env


def test_repr_hides_the_secrets():
    text = repr(GitCredentials("bot", "s3cr3t", "KEY"))
    assert "s3cr3t" not in text and "KEY" not in text and "bot" in text
