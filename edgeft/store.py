"""Content-addressed, atomic, resumable artifact store.

Layout: <root>/<key>/ holds one artifact; <root>/<key>/artifact.json is written last, so a folder
without it was never finished. A stage writes into <root>/.tmp-<key>-<pid>/ and the folder is
renamed into place with os.replace only after its manifest is written: a crash or Ctrl-C leaves a
.tmp- folder that no lookup ever reads, and `clean_stale` removes it on the next run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

from .artifact import MANIFEST, Artifact


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def cache_key(stage_type: str, stage_version: int, config: dict, input_keys: list[str],
              file_hashes: dict[str, str], context: dict) -> str:
    """Key = hash of everything the output depends on. Keys chain through `input_keys`."""
    payload = {
        "type": stage_type, "version": stage_version, "config": config,
        "inputs": list(input_keys), "files": dict(sorted(file_hashes.items())), "context": context,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> Artifact | None:
        """The committed artifact for `key`, or None. Never returns a half-written one."""
        folder = self.folder(key)
        if not (folder / MANIFEST).is_file():
            return None
        return Artifact.read(folder)

    @contextlib.contextmanager
    def lock(self, key: str):
        """Hold the lock of `key` (an flock on <root>/.locks/<key>.lock): a second process asking for the
        same key waits until the first has committed or aborted, then finds its result."""
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        with open(locks / f"{key}.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                import logging
                logging.getLogger("edgeft").info("%s: another run is producing this artifact; waiting for it", key)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def begin(self, key: str) -> Path:
        tmp = self.root / f".tmp-{key}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, artifact: Artifact) -> Artifact:
        """Write the manifest last, then atomically move the folder into place."""
        final = self.folder(artifact.key)
        artifact.created = artifact.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        artifact.path = final
        manifest = tmp / MANIFEST
        part = tmp / (MANIFEST + ".part")
        part.write_text(json.dumps(artifact.to_json(), indent=2, default=str))
        os.replace(part, manifest)
        if final.exists():                 # a forced re-run replaces the old result
            trash = self.root / f".old-{artifact.key}-{os.getpid()}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        return artifact

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def clean_stale(self) -> list[Path]:
        """Remove temp folders left by runs that died (their pid no longer exists)."""
        removed = []
        for p in self.root.glob(".tmp-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        for p in self.root.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)
        return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
