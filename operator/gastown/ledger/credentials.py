"""Git credentials from a Secret, handed to git through its environment, never its argv or logs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Git asks this helper for HTTPS credentials; it answers from the environment, so no secret is
# ever in a command line, a config file or a Job spec. The helper text itself is fixed.
CREDENTIAL_HELPER = ('!f() { test "$1" = get || exit 0; echo username="$GIT_USERNAME"; '
                     'echo password="$GIT_PASSWORD"; }; f')


def ssh_command(key_path: str, known_hosts: str = "/tmp/known_hosts") -> str:  # noqa: S108
    return (f"ssh -i {key_path} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new "
            f"-o UserKnownHostsFile={known_hosts}")


@dataclass(frozen=True)
class GitCredentials:
    username: str | None = None
    password: str | None = None  # a password or a token
    ssh_key: str | None = None  # a private key (the ssh-privatekey of a kubernetes.io/ssh-auth Secret)

    @classmethod
    def from_secret_data(cls, data: dict[str, str]) -> GitCredentials:
        return cls(data.get("username"), data.get("password") or data.get("token"), data.get("ssh-privatekey"))

    def env(self, home: Path) -> dict[str, str]:
        """Environment for git commands; an SSH key is written under ``home`` readable by us only."""
        env: dict[str, str] = {}
        if self.password:
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="credential.helper", GIT_CONFIG_VALUE_0=CREDENTIAL_HELPER,
                       GIT_USERNAME=self.username or "git", GIT_PASSWORD=self.password)
        if self.ssh_key:
            home.mkdir(parents=True, exist_ok=True)
            key = home / "ssh-key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.ssh_key if self.ssh_key.endswith("\n") else self.ssh_key + "\n")
            env["GIT_SSH_COMMAND"] = ssh_command(str(key), str(home / "known_hosts"))
        return env

    def __repr__(self) -> str:  # never print a secret by accident
        return f"GitCredentials(username={self.username!r}, password={'***' if self.password else None}, " \
               f"ssh_key={'***' if self.ssh_key else None})"
