"""Content-addressed, atomic, resumable, verified artifact store.

Layout: <root>/<key>/ holds one artifact; <root>/<key>/artifact.json is written last, so a folder
without it was never finished. A stage writes into <root>/.tmp-<key>-<host>-<pid>-<random>/ while it
holds the key's lock (<root>/.locks/<key>.lock, an flock); `commit` hashes and fsyncs every file,
records each file's sha256 and size in the manifest, writes the manifest, fsyncs the folder and
renames it into place with os.replace. A crash or Ctrl-C leaves a .tmp- folder that no lookup ever
reads; `clean_stale` removes it on a later run once nobody holds that key's lock (judged by the lock,
not by a pid: another host or container sharing the store can have the same pids).

`get` checks every recorded file (size, then sha256; hashes memoised per process) and raises
ArtifactCorruptError for a changed or missing one. Manifests written before hashes were recorded
still load, unchecked.

`FileHashes` hashes the files and folders a stage reads (data, local models, calibration manifests)
for cache keys, memoised by (absolute path, size, mtime_ns) in <root>/.hashes.json.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import time
from pathlib import Path

from .artifact import MANIFEST, Artifact
from .errors import ArtifactCorruptError

log = logging.getLogger("edgeft")
HASH_CACHE = ".hashes.json"
LOCKS = ".locks"
# a file modified less than this long ago is hashed but not memoised: mtime has the resolution of a
# clock tick, so a second edit of the same size within one tick would otherwise look unchanged
RACY_S = 2.0


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_file(path: str | Path) -> str:
    """Content hash of a file, or of a folder's files and names (FileHashes without a memo)."""
    return FileHashes().path(path)


def sha256_of(path: str | Path, chunk: int = 1 << 20, fsync: bool = False) -> str:
    """sha256 of one file's bytes (nothing else: not its name). `fsync` also flushes it to disk."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
        if fsync:
            os.fsync(fh.fileno())
    return h.hexdigest()


def cache_key(stage_type: str, stage_version: int, config: dict, input_keys: list[str],
              file_hashes: dict[str, str], context: dict) -> str:
    """Key = hash of everything the output depends on. Keys chain through `input_keys`."""
    payload = {
        "type": stage_type, "version": stage_version, "config": config,
        "inputs": list(input_keys), "files": dict(sorted(file_hashes.items())), "context": context,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


class FileHashes:
    """Content hashes of input files and folders, memoised by (absolute path, size, mtime_ns).

    With a `cache` path the memo persists there as JSON (written atomically by `save`), so a re-run
    stats unchanged files instead of hashing them again."""

    def __init__(self, cache: str | Path | None = None):
        self.cache = Path(cache) if cache else None
        self.memo: dict[str, list] = {}
        self.dirty = False
        if self.cache and self.cache.is_file():
            try:
                data = json.loads(self.cache.read_text())
                self.memo = {k: v for k, v in data.get("files", {}).items() if isinstance(v, list) and len(v) == 3}
            except (OSError, ValueError, AttributeError):
                self.memo = {}     # a damaged cache is only a cache: hash again

    def file(self, path: str | Path) -> str:
        """sha256 of a file's bytes."""
        p = Path(path).resolve()
        st = p.stat()
        name = str(p)
        hit = self.memo.get(name)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = sha256_of(p)
        if time.time_ns() - st.st_mtime_ns > RACY_S * 1e9:
            self.memo[name] = [st.st_size, st.st_mtime_ns, digest]
            self.dirty = True
        return digest

    def tree(self, path: str | Path) -> str:
        """sha256 over (relative path, sha256) of every file under a folder: names and contents."""
        root = Path(path)
        h = hashlib.sha256()
        for f in sorted(q for q in root.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(root).as_posix()}\0{self.file(f)}\n".encode())
        return h.hexdigest()

    def path(self, path: str | Path) -> str:
        """`file` for a file, `tree` for a folder."""
        return self.tree(path) if Path(path).is_dir() else self.file(path)

    def save(self) -> None:
        if not (self.cache and self.dirty):
            return
        try:
            if self.cache.is_file():       # keep what a concurrent run memoised meanwhile
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    self.memo = {**json.loads(self.cache.read_text()).get("files", {}), **self.memo}
            part = self.cache.with_name(f"{self.cache.name}.{_unique()}.part")
            part.write_text(json.dumps({"version": 1, "files": self.memo}))
            os.replace(part, self.cache)
            self.dirty = False
        except OSError as e:              # a read-only store still works, it just hashes every time
            log.debug("could not write %s: %s", self.cache, e)


# (absolute path, size, mtime_ns) -> sha256 of the files of committed artifacts this process checked
_VERIFIED: dict[tuple[str, int, int], str] = {}


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._hashes: FileHashes | None = None

    def folder(self, key: str) -> Path:
        return self.root / key

    @property
    def hashes(self) -> FileHashes:
        """Input-file hashes memoised in <root>/.hashes.json."""
        if self._hashes is None:
            self._hashes = FileHashes(self.root / HASH_CACHE)
        return self._hashes

    def get(self, key: str, stage: str | None = None, verify: bool = True) -> Artifact | None:
        """The committed artifact for `key`, or None. Never returns a half-written one; with `verify`
        (the default) raises ArtifactCorruptError if a file differs from its recorded size or sha256.
        `stage`: the name the error tells the user to --force (default: the producing stage's)."""
        folder = self.folder(key)
        if not (folder / MANIFEST).is_file():
            return None
        art = Artifact.read(folder)
        if verify:
            verify_files(art, stage or art.stage)
        return art

    def _lock_file(self, key: str):
        locks = self.root / LOCKS
        locks.mkdir(exist_ok=True)
        return open(locks / f"{key}.lock", "a+")

    @contextlib.contextmanager
    def lock(self, key: str):
        """Hold the lock of `key` (an flock on <root>/.locks/<key>.lock): a second process asking for the
        same key waits until the first has committed or aborted, then finds its result."""
        with self._held(key, wait=True):
            yield

    @contextlib.contextmanager
    def try_lock(self, key: str):
        """Yield True holding the lock of `key` if nobody else holds it, else yield False at once."""
        with self._held(key, wait=False) as held:
            yield held

    @contextlib.contextmanager
    def _held(self, key: str, wait: bool):
        with self._lock_file(key) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                log.info("%s: another run is producing this artifact; waiting for it", key)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def begin(self, key: str) -> Path:
        """A fresh temp folder for `key` (call it holding `lock(key)`, as the runner does)."""
        tmp = self.root / f".tmp-{key}-{_unique()}"
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, artifact: Artifact) -> Artifact:
        """Hash and fsync every file, write the manifest last, fsync, then atomically move the folder
        into place (replacing an older result of the same key: a forced re-run)."""
        final = self.folder(artifact.key)
        artifact.created = artifact.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        artifact.path = final
        artifact.files = {}
        for f in sorted(q for q in tmp.rglob("*") if q.is_file()):
            rel = f.relative_to(tmp).as_posix()
            if rel in (MANIFEST, MANIFEST + ".part"):
                continue
            artifact.files[rel] = {"sha256": sha256_of(f, fsync=True), "size": f.stat().st_size}
        manifest = tmp / MANIFEST
        part = tmp / (MANIFEST + ".part")
        with open(part, "w") as fh:
            fh.write(json.dumps(artifact.to_json(), indent=2, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, manifest)
        for d in [tmp, *sorted((q for q in tmp.rglob("*") if q.is_dir()), reverse=True)]:
            _fsync_dir(d)
        if final.exists():                 # a forced re-run replaces the old result
            trash = self.root / f".old-{artifact.key}-{_unique()}"
            os.replace(final, trash)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(trash, final)   # keep the old result (a kill here leaves the key absent instead)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.root)
        for rel, rec in artifact.files.items():     # this process need not hash them again on `get`
            with contextlib.suppress(OSError):
                st = (final / rel).stat()
                _VERIFIED[(str((final / rel).resolve()), st.st_size, st.st_mtime_ns)] = rec["sha256"]
        return artifact

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def clean_stale(self) -> list[Path]:
        """Remove .tmp-<key>-* and .old-<key>-* folders left by runs that died: only those whose key's
        lock can be taken at once (a live writer, on this host or another, holds it)."""
        removed = []
        for p in sorted([*self.root.glob(".tmp-*"), *self.root.glob(".old-*")]):
            key = p.name[5:].split("-", 1)[0]
            if not key:
                continue
            with self.try_lock(key) as free:
                if not free:
                    continue
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        return removed


def verify_files(art: Artifact, stage: str) -> None:
    """ArtifactCorruptError naming the first file of `art` whose size or sha256 is not the recorded one."""
    for rel, rec in (art.files or {}).items():
        p = art.path / rel
        try:
            st = p.stat()
        except OSError:
            raise ArtifactCorruptError(p, stage, art.key, "the file is missing") from None
        if st.st_size != rec.get("size"):
            raise ArtifactCorruptError(p, stage, art.key, f"size {st.st_size} bytes, recorded {rec.get('size')}")
        memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        digest = _VERIFIED.get(memo)
        if digest is None:
            digest = sha256_of(p)
        if digest != rec.get("sha256"):
            raise ArtifactCorruptError(p, stage, art.key, "its sha256 differs from the one recorded at commit")
        _VERIFIED[memo] = digest


def _unique() -> str:
    """host-pid-random: unique across processes, containers and hosts sharing a store."""
    host = "".join(c if c.isalnum() or c in "._" else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
