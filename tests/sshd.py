"""A real OpenSSH server for the remote-device tests: Debian's sshd on 127.0.0.1, a free port, a fresh
host key and a fresh client key, and an ssh_config file naming it as a Host — the way a user's own
~/.ssh/config names a board. Host keys are checked (StrictHostKeyChecking yes against a known_hosts
file that has this server's key), nothing is weakened for the test.

`make system-packages` installs openssh-server (as root); without it the tests skip with the reason.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
DEVICE_VENV = Path(__file__).resolve().parents[1] / ".venv-device"


def missing() -> str | None:
    """Why the SSH tests cannot run here (None: they can)."""
    if not os.path.isfile(SSHD):
        return "sshd is not installed (Debian openssh-server; `make system-packages` installs it as root)"
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "the OpenSSH client (ssh, ssh-keygen) is not installed"
    if not (DEVICE_VENV / "bin" / "python").exists():
        return f"no device environment at {DEVICE_VENV} (`make device-env` makes it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeft-test", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class SshServer:
    """sshd for one test (or module): `host` is the Host alias in `ssh_config`."""

    host = "edgeft-testdev"

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.port = _free_port()
        self.host_pub = _keygen(root / "host_key")
        client_pub = _keygen(root / "client_key")
        (root / "authorized_keys").write_text(client_pub + "\n")
        self.known_hosts = root / "known_hosts"
        self.trust(self.host_pub)
        user = getpass.getuser()
        (root / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}",
            f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", f"AllowUsers {user}",
            "PermitRootLogin prohibit-password" if os.geteuid() == 0 else "", "LogLevel ERROR", ""]))
        self.ssh_config = root / "ssh_config"
        self.ssh_config.write_text("\n".join([
            f"Host {self.host}", "  HostName 127.0.0.1", f"  Port {self.port}", f"  User {user}",
            f"  IdentityFile {root / 'client_key'}", "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {self.known_hosts}", "  StrictHostKeyChecking yes", ""]))
        self.proc: subprocess.Popen | None = None

    def trust(self, pub: str) -> None:
        """Make known_hosts hold `pub` as this server's key (another key: a host-key mismatch)."""
        kind, key = pub.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {kind} {key}\n")

    def start(self) -> SshServer:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)       # privilege separation folder sshd wants as root
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "ab"),
                                     start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start listening within 20 s")

    def kill_connections(self) -> int:
        """SIGKILL every sshd process of this server (the listener and each connection's): the device
        drops off the network mid-job. What the sessions started (the runner) is left alone."""
        import psutil

        if self.proc is None:
            return 0
        procs = [p for p in psutil.Process(self.proc.pid).children(recursive=True) if p.name().startswith("sshd")]
        procs.append(psutil.Process(self.proc.pid))
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)
        return len(procs)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
