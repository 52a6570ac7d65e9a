"""Remote devices over SSH: the host side of edgeft/device.

A benchmark target may be a device reached with the system OpenSSH client:

    targets:
      - cpu
      - {name: pi5, ssh: pi@pi5.local, runtime: onnxruntime, threads: 4}

`ssh` is whatever the user's `ssh` takes (a Host alias of ~/.ssh/config, user@host,
ssh://user@host:port; jump hosts, agents and keys come from the user's config), and host keys are
checked exactly as the user's client checks them: edgeft never passes StrictHostKeyChecking or
UserKnownHostsFile, and refuses a recipe that tries to. It adds only BatchMode=yes (never a
password prompt in a pipeline), a connect timeout, keep-alives (a dead link is noticed within
~15 s) and a control socket so the many small steps of a job share one connection.

What happens on the device, under `workdir` (default ~/.cache/edgeft-device):
- runner/<hash>/: the device runner's files (RUNNER_FILES: edgeft/device plus the few modules it
  imports, numpy-only), copied by the host rather than pip-installed, so the device always runs the
  code of the host's edgeft version and needs no package index; <hash> is their content hash, and
  the runner's `info` reports its protocol, checked here (the runner checks the job's in turn);
- objects/<hash>/: each artifact's files (model + external data, or .xml + .bin) and each encoded
  input set, by content hash: sent once, re-sent only when the content changes;
- jobs/<id>/: one job (job.json in, logits-<i>.npz + result.json out), deleted after its results came back.
Every upload lands in a temporary folder and is renamed into place after it was complete.

Every failure is a DeviceError naming the device and the step (connect, runner, send, run, fetch),
with the cause (unreachable, host key mismatch, connection lost, timed out, out of disk or memory,
python or runtime missing).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shlex
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from ..schema import NAME_RE, Strict

log = logging.getLogger("edgeft")

RUNTIME_KINDS = {"onnxruntime": ("onnx", "ort"), "openvino": ("onnx", "openvino")}   # ort: ORT format (.ort)
# the local target whose artifact limits a remote runtime shares (dynamic INT8 runs on ORT only)
RUNS_AS = {"onnxruntime": "cpu", "openvino": "openvino"}
# ssh options that would weaken host-key checking: refused in `ssh_options`
REFUSED_OPTIONS = ("stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile", "checkhostip",
                   "updatehostkeys", "verifyhostkeydns", "knownhostscommand")


class DeviceError(RuntimeError):
    """A remote device failed at one step; the message names both."""

    def __init__(self, device: str, step: str, reason: str):
        super().__init__(f"device {device!r}, step {step}: {reason}")
        self.device, self.step, self.reason = device, step, reason


class RemoteTarget(Strict):
    """A device reached over SSH (see the module doc)."""
    name: str = Field(pattern=NAME_RE, description="the target's name in the report")
    ssh: str = Field(description="destination as `ssh` takes it: a ~/.ssh/config Host, user@host, ssh://user@host:port")
    runtime: Literal["onnxruntime", "openvino"] = "onnxruntime"
    threads: PositiveInt | None = Field(None, description="intra-op threads on the device (default: the stage's)")
    python: str = Field("python3", description="the device's Python that has numpy and the runtime")
    workdir: str = Field(".cache/edgeft-device", description="the device's edgeft folder (relative: to the home)")
    ssh_config: str | None = Field(None, description="an ssh_config file to use instead of ~/.ssh/config (-F)")
    ssh_options: list[str] = Field([], description="extra `-o Key=Value` options (host-key checking cannot be changed)")
    connect_timeout_s: PositiveInt = Field(20, description="to open the connection")
    copy_timeout_s: PositiveInt = Field(900, description="per upload (artifacts, inputs, the runner)")
    job_timeout_s: PositiveInt = Field(3600, description="for the whole benchmark job on the device")
    emulated: bool = Field(False, description="the device is an emulator: its latencies are labelled emulated")

    @field_validator("ssh")
    @classmethod
    def _destination(cls, v: str) -> str:
        if not v or v.startswith("-") or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} is not an ssh destination (no spaces, no leading '-')")
        return v

    @field_validator("ssh_options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        for opt in v:
            key = opt.split("=", 1)[0].strip().lower()
            if "=" not in opt or not key:
                raise ValueError(f"{opt!r}: give ssh options as Key=Value")
            if key in REFUSED_OPTIONS:
                raise ValueError(f"{opt!r}: edgeft does not change host-key checking; set it in your ssh config "
                                 "if you must")
        return v

    @property
    def accepts(self) -> tuple[str, ...]:
        return RUNTIME_KINDS[self.runtime]

    @property
    def runs_as(self) -> str:
        return RUNS_AS[self.runtime]

    def describe(self) -> str:
        return f"{self.runtime} on {self.ssh} over SSH" + (" (emulated)" if self.emulated else "")


# ------------------------------------------------------------------------------------------- the runner

RUNNER_FILES = ("__init__.py", "device/__init__.py", "device/protocol.py", "device/runner.py", "ops/__init__.py",
                "ops/timing.py", "targets/__init__.py", "targets/base.py", "targets/fingerprint.py",
                "targets/ort_cpu.py", "targets/openvino_cpu.py")


def runner_files() -> dict[str, bytes]:
    """edgeft/<rel> -> content of every file the device runner imports."""
    root = Path(__file__).resolve().parents[1]
    return {f"edgeft/{rel}": (root / rel).read_bytes() for rel in RUNNER_FILES}


def content_hash(files: dict[str, str]) -> str:
    """One hash for a set of files given as {relative name: sha256}: their names and contents."""
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    from ..store import sha256_of

    return sha256_of(path)


def artifact_files(artifact) -> dict[str, Path]:
    """{name in the device folder: local path} of what the runtime reads: the model file and its
    external data (ONNX) or its .bin (OpenVINO IR)."""
    main = artifact.main_path
    if artifact.kind == "onnx":
        import onnx

        model = onnx.load(str(main), load_external_data=False)
        ext = sorted({e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                      for e in t.external_data if e.key == "location"})
        names = [main.name, *ext]
    else:
        names = [main.name] + sorted(p.name for p in main.parent.glob(main.stem + ".*") if p != main)
    return {n: main.parent / n for n in names}


def file_hashes(artifact, files: dict[str, Path]) -> dict[str, str]:
    """sha256 of each file, from the artifact's manifest where it recorded them (the store checked them)."""
    recorded = getattr(artifact, "files", None) or {}
    base = Path(artifact.main_path).parent
    out = {}
    for name, path in files.items():
        rel = path.relative_to(artifact.path).as_posix() if artifact.path in path.parents else None
        rec = recorded.get(rel) if rel else None
        out[name] = rec["sha256"] if rec else _sha256(base / name)
    return out


# ---------------------------------------------------------------------------------------------- the link

def _ssh_failure(device: str, step: str, rc: int, stderr: str, timeout_hint: str = "") -> DeviceError:
    """A DeviceError that says what went wrong, from ssh's exit status and stderr."""
    err = stderr.strip()
    lines = [ln for ln in err.splitlines() if ln.strip() and "exiting with failure status" not in ln.lower()]
    last = lines[-1] if lines else (err.splitlines()[-1] if err else "")
    low = err.lower()
    if "host key verification failed" in low or "remote host identification has changed" in low:
        reason = ("the device's host key does not match the one your known_hosts has for it (or it has none): "
                  "edgeft checks host keys as your ssh client does; connect once with `ssh` and verify the key")
    elif "permission denied" in low:
        reason = f"authentication refused ({last}); edgeft uses your keys and agent, never a password prompt"
    elif any(s in low for s in ("could not resolve", "connection refused", "no route to host",
                                "connection timed out", "network is unreachable", "operation timed out")):
        reason = f"unreachable: {last}"
    elif any(s in low for s in ("closed by remote host", "connection reset", "broken pipe", "timeout, server",
                                "connection closed", "lost connection", "killed by signal")):
        reason = f"the connection was lost ({last})"
    elif any(s in low for s in ("no space left on device", "disk quota exceeded", "wrote only")):
        reason = f"out of disk on the device ({last})"
    elif any(s in low for s in ("out of memory", "memoryerror", "failed to allocate memory", "bad_alloc",
                                "cannot allocate memory")) or rc == 137:
        reason = f"out of memory on the device ({last or 'killed, status 137'})"
    elif rc == 255 and not last:    # a shared connection that died says nothing more
        reason = "the connection was lost (ssh exited 255 without a message)"
    elif rc == 255:
        reason = f"ssh failed: {last}"
    else:
        reason = f"exit status {rc}: {last or 'no message'}"
    return DeviceError(device, step, reason + timeout_hint)


class SshDevice:
    """One device: ssh commands over a shared control connection, uploads by content hash, jobs."""

    def __init__(self, target: RemoteTarget, base_dir: Path | None = None):
        self.t = target
        self.base_dir = base_dir or Path(".")
        # a control socket's path must be short (about 100 bytes): a fresh folder under /tmp
        self._control_dir = tempfile.mkdtemp(prefix="edgeft-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.runner_dir: str | None = None

    # -- plumbing
    def ssh_command(self, remote: str) -> list[str]:
        t = self.t
        cmd = ["ssh"]
        if t.ssh_config:
            from ..schema import resolve_path

            cmd += ["-F", str(resolve_path(t.ssh_config, self.base_dir))]
        for opt in ("BatchMode=yes", f"ConnectTimeout={t.connect_timeout_s}", "ServerAliveInterval=5",
                    "ServerAliveCountMax=3", "ControlMaster=auto", f"ControlPath={self._control_dir}/%C",
                    "ControlPersist=120", *t.ssh_options):
            cmd += ["-o", opt]
        return [*cmd, "--", t.ssh, remote]

    def sh(self, remote: str, step: str, timeout_s: int | None = None, stdin: bytes | None = None,
           timeout_name: str = "connect_timeout_s") -> bytes:
        """Run shell command `remote` on the device (in the login's home); its stdout, or a DeviceError."""
        timeout_s = timeout_s or self.t.connect_timeout_s + 60
        try:
            out = subprocess.run(self.ssh_command(remote), input=stdin if stdin is not None else b"",
                                 capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(self.t.name, step, f"timed out after {timeout_s} s (raise `{timeout_name}` if the "
                              "device is just slow)") from e
        except FileNotFoundError as e:
            raise DeviceError(self.t.name, step, "the `ssh` client is not installed on this machine "
                              "(Debian: apt-get install openssh-client)") from e
        if out.returncode != 0:
            raise _ssh_failure(self.t.name, step, out.returncode, out.stderr.decode(errors="replace"))
        return out.stdout

    @property
    def wd(self) -> str:
        """The device's edgeft folder, quoted for its shell (`~/x` is x in the home, where ssh starts)."""
        w = self.t.workdir
        w = w[2:] if w.startswith("~/") else ("." if w == "~" else w)
        return shlex.quote(w)

    def _upload(self, folders: dict[str, dict[str, bytes | Path]], where: str, step: str) -> None:
        """Put each {hash: {name: bytes or local path}} at <workdir>/<where>/<hash>/ (atomic per hash)."""
        if not folders:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for h, files in folders.items():
                for name, src in files.items():
                    if isinstance(src, Path):
                        tar.add(str(src), arcname=f"{h}/{name}")
                    else:
                        info = tarfile.TarInfo(f"{h}/{name}")
                        info.size = len(src)
                        tar.addfile(info, io.BytesIO(src))
        inbox = f"{where}/.in-{uuid.uuid4().hex[:12]}"
        moves = " && ".join(f"touch {inbox}/{h}/.complete && rm -rf {where}/{h} && mv {inbox}/{h} {where}/{h}"
                            for h in folders)
        self.sh(f"cd {self.wd} && mkdir -p {inbox} && tar -x -C {inbox} && {moves} && rm -rf {inbox} "
                f"|| {{ s=$?; rm -rf {inbox}; exit $s; }}", step, self.t.copy_timeout_s, stdin=buf.getvalue(),
                timeout_name="copy_timeout_s")

    def _present(self, hashes: list[str], where: str, step: str) -> set[str]:
        if not hashes:
            return set()
        out = self.sh(f"mkdir -p {self.wd}/{where} && cd {self.wd}/{where} && for h in {' '.join(hashes)}; do "
                      f"[ -f $h/.complete ] && echo $h; done; true", step)
        return set(out.decode().split())

    # -- steps
    def connect(self) -> dict:
        """Copy the runner if the device lacks this version, then its `info` (protocol checked)."""
        from ..device import PROTOCOL

        files = runner_files()
        h = content_hash({k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
        if h not in self._present([h], "runner", "connect"):
            log.info("%s: copying the device runner (%d files)", self.t.name, len(files))
            self._upload({h: files}, "runner", "runner")
        self.runner_dir = f"runner/{h}"
        out = self._python("info", "runner", self.t.connect_timeout_s + 60)
        try:
            info = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            raise DeviceError(self.t.name, "runner", f"unreadable answer from the runner: {out[-300:]!r}") from e
        if info.get("protocol") != PROTOCOL:
            raise DeviceError(self.t.name, "runner", f"the device runner speaks protocol {info.get('protocol')}, "
                              f"this edgeft {PROTOCOL}")
        return info

    def _python(self, args: str, step: str, timeout_s: int, timeout_name: str = "connect_timeout_s") -> bytes:
        py = shlex.quote(self.t.python)
        script = (f"cd {self.wd} && command -v {py} >/dev/null 2>&1 || {{ echo \"edgeft: python {py} not found "
                  f"on the device\" >&2; exit 127; }}; PYTHONPATH={self.runner_dir} PYTHONNOUSERSITE=1 "
                  f"exec {py} -m edgeft.device.runner {args}")
        try:
            return self.sh(script, step, timeout_s, timeout_name=timeout_name)
        except DeviceError as e:
            if "No module named 'numpy'" in e.reason:
                raise DeviceError(self.t.name, step, f"{self.t.python} on the device has no numpy: "
                                  "pip install numpy (and the runtime) there") from None
            if "python" in e.reason and "not found" in e.reason:
                raise DeviceError(self.t.name, step, f"python {self.t.python!r} not found on the device "
                                  "(set the target's `python`)") from None
            raise

    def check_runtime(self, info: dict) -> None:
        have = info["fingerprint"].get("runtimes", {})
        if self.t.runtime not in have:
            from importlib.metadata import PackageNotFoundError, version

            try:
                pin = f"=={version(self.t.runtime)}"
            except PackageNotFoundError:
                pin = ""
            raise DeviceError(self.t.name, "runtime", f"{self.t.python} on the device cannot import "
                              f"{self.t.runtime} (has: {', '.join(have) or 'no runtime'}); install it there: "
                              f"pip install {self.t.runtime}{pin}")

    def send(self, objects: dict[str, dict[str, bytes | Path]], step: str = "send") -> int:
        """Upload the objects the device does not have yet; how many were sent."""
        missing = [h for h in objects if h not in self._present(list(objects), "objects", step)]
        if missing:
            self._upload({h: objects[h] for h in missing}, "objects", step)
        return len(missing)

    def run_job(self, job: dict) -> tuple[dict, dict[int, dict]]:
        """Run one job; (result.json, {row: {name: array}} of its logits)."""
        import numpy as np

        job_id = uuid.uuid4().hex[:16]
        self._upload({job_id: {"job.json": json.dumps(job).encode()}}, "jobs", "send")
        try:
            self._python(f"run jobs/{job_id}", "run", self.t.job_timeout_s, timeout_name="job_timeout_s")
            data = self.sh(f"cd {self.wd}/jobs/{job_id} && tar -c result.json logits-*.npz", "fetch",
                           self.t.copy_timeout_s, timeout_name="copy_timeout_s")
        finally:
            try:
                self.sh(f"rm -rf {self.wd}/jobs/{job_id}", "clean up")
            except DeviceError as e:
                log.debug("%s", e)
        files = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                fh = tar.extractfile(m)
                if fh is not None:
                    files[m.name] = fh.read()
        if "result.json" not in files:
            raise DeviceError(self.t.name, "fetch", "the job left no result.json")
        result = json.loads(files["result.json"])
        logits = {}
        for name, raw in files.items():
            if m := re.fullmatch(r"logits-(\d+)\.npz", name):
                with np.load(io.BytesIO(raw)) as z:
                    logits[int(m.group(1))] = {k: z[k] for k in z.files}
        return result, logits

    def close(self) -> None:
        """Stop the shared connection (if one was opened) and remove its socket folder."""
        try:
            subprocess.run([*self.ssh_command("true")[:-2], "-O", "exit", "--", self.t.ssh], capture_output=True,
                           timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            pass
        import shutil

        shutil.rmtree(self._control_dir, ignore_errors=True)


def stable_fingerprint(info: dict) -> dict:
    """The part of a device's fingerprint its timings depend on (the cache key of its rows): CPU, ISA,
    arch, cores, memory, OS, python, numpy, runtime versions — not free memory or temperature."""
    return dict(info["fingerprint"])
