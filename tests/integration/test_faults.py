"""Faults on a small real recipe through the CLI, in real subprocesses sharing a real store:

- SIGKILL in the middle of every stage type in turn: nothing of the killed stage is visible, the
  stages before it are kept and reused by the next attempt, and the finished chain has exactly the
  keys of an uninterrupted plan, every file matching the hash its manifest records;
- two runs at once on one store: each stage runs once, the other run waits and reuses it;
- a committed model file with flipped bytes: the run fails naming the file and `--force STAGE`;
  `--force STAGE` rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from edgeft.artifact import MANIFEST
from edgeft.cli import main
from edgeft.recipe import load_recipe
from edgeft.runner import plan
from edgeft.store import Store
from tests.conftest import ROOT, small_recipe

pytestmark = pytest.mark.slow      # real recipes through the CLI and the runner (minutes)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
KILL_AFTER_S = 0.5      # after a stage logs "running": its temp folder exists and its work has begun
WAIT_S = 240            # for one log line (a stage start on a loaded 2-core machine)


def tiny(name: str) -> dict:
    r = small_recipe(name=name)
    r["data"]["max_samples"] = {"train": 64, "validation": 32, "test": 40}
    r["data"]["max_length"] = 16
    return r


def every_stage_type() -> list[dict]:
    """One stage of every type; each runs for a second or more (prune: two steps with recovery), so a
    kill half a second after it starts lands inside it."""
    return [
        {"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
        {"name": "onnx", "type": "export", "input": "@finetune"},
        {"name": "int8-dynamic", "type": "quantize", "input": "@onnx", "method": "dynamic"},
        # one epoch on 64 samples leaves near-ties that INT8 flips: the floor is not what this tests
        {"name": "int8-static", "type": "quantize", "input": "@onnx", "method": "static",
         "calibration": "calib.yaml", "parity": {"min_agreement": 0.5}},
        {"name": "prune", "type": "prune", "input": "@finetune", "drop_layers": [1], "heads": 0.5,
         "steps": 2, "recovery_steps": 4},
        {"name": "distill", "type": "distill", "input": "@prune", "teacher": "@finetune", "epochs": 1,
         "batch_size": 16},
        {"name": "qat", "type": "qat", "input": "@distill", "epochs": 0.2, "batch_size": 16,
         "calibration": "calib.yaml"},
        {"name": "bench", "type": "benchmark", "artifacts": ["@onnx", "@int8-dynamic", "@int8-static", "@qat"],
         "targets": ["cpu"], "latency_samples": 5, "rounds": 1, "warmup": 1, "fixed_runs": 2,
         "throughput_batches": 1, "memory": False},
    ]


def write_project(folder: Path, recipe: dict, calibration: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rfile = folder / "recipe.yaml"
    rfile.write_text(yaml.safe_dump(recipe, sort_keys=False))
    if calibration:      # written by the CLI from the recipe's own data, as a user would
        assert main(["calibration", str(rfile), "-n", "16", "--output", str(folder / "calib.yaml")]) == 0
    return rfile


class Run:
    """`edgeft run` in a subprocess (its own process group), its stderr read line by line."""

    def __init__(self, rfile: Path, runs: Path, *extra: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeft.cli", "run", str(rfile), "--runs", str(runs),
                                      *extra], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.done = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip())
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    @property
    def log(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                assert not self.done and left > 0, f"{text!r} never appeared; log:\n" + "\n".join(self.lines[-40:])
                self.cond.wait(min(left, 1.0))

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.reader.join(30)

    def wait(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout)
        self.reader.join(30)
        return rc


def running(name: str, type_: str) -> str:
    return f"{name} ({type_}): running"


def reusing(name: str, type_: str) -> str:
    return f"{name} ({type_}): done before, reusing"


def assert_files_match_manifest(store: Store, key: str) -> None:
    """Every file the manifest lists has its recorded size and sha256 (hashed here, from scratch)."""
    folder = store.folder(key)
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert files, f"{key}: no file hashes in its manifest"
    for rel, rec in files.items():
        data = (folder / rel).read_bytes()
        assert len(data) == rec["size"] and hashlib.sha256(data).hexdigest() == rec["sha256"], f"{key}/{rel}"


def test_kill_during_every_stage_type_then_resume(tmp_path):
    t0 = time.perf_counter()
    recipe = tiny("faults")
    recipe["stages"] = every_stage_type()
    rfile = write_project(tmp_path / "project", recipe, calibration=True)
    runs = tmp_path / "runs"
    store = Store(runs / ".store")
    stages = [(s["name"], s["type"]) for s in recipe["stages"]]
    keys = {p.name: p.key for p in plan(load_recipe(rfile))}

    for i, (name, type_) in enumerate(stages):
        run = Run(rfile, runs)
        run.wait_for(running(name, type_))
        time.sleep(KILL_AFTER_S)
        run.kill()
        log = run.log
        assert f"{name}: finished" not in log, f"{name} finished before the kill; log:\n{log[-3000:]}"
        assert store.get(keys[name]) is None, f"{name}: killed, yet its artifact is visible"
        assert list(store.root.glob(f".tmp-{keys[name]}-*")), f"{name}: killed before it began writing"
        for before, _ in stages[:i]:
            assert store.get(keys[before]) is not None, f"{before} (before the killed {name}) is not committed"
        # this attempt reused what the earlier attempts finished and ran the one killed last time
        for before, t in stages[:max(i - 1, 0)]:
            assert reusing(before, t) in log and running(before, t) not in log, f"{before}:\n{log[-3000:]}"
        if i > 0:
            prev, t = stages[i - 1]
            assert f"{running(prev, t)} → {keys[prev]}" in log and f"{prev}: finished" in log
        assert f"{running(name, type_)} → {keys[name]}" in log

    run = Run(rfile, runs)
    assert run.wait() == 0, run.log[-3000:]
    log = run.log
    assert "removed an unfinished stage folder" in log            # the last attempt's leftover
    for name, t in stages[:-1]:
        assert reusing(name, t) in log
    assert running(*stages[-1]) in log and (runs / "faults" / "report.json").is_file()

    final = {n: s["key"] for n, s in json.loads((runs / "faults" / "run.json").read_text())["stages"].items()}
    uninterrupted = {p.name: p.key for p in plan(load_recipe(rfile))}
    assert final == uninterrupted == keys
    for key in final.values():
        assert store.get(key) is not None
        assert_files_match_manifest(store, key)
    assert not list(store.root.glob(".tmp-*")) and not list(store.root.glob(".old-*"))
    assert store.clean_stale() == [] and not list(store.root.glob(".tmp-*"))
    print(f"kill chain: {time.perf_counter() - t0:.1f} s")


CHEAP = [{"name": "finetune", "type": "finetune", "epochs": 1, "batch_size": 16},
         {"name": "onnx", "type": "export"},
         {"name": "int8", "type": "quantize", "input": "@onnx", "method": "dynamic"}]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """Two runs of one recipe started together on one store (separate run folders)."""
    tmp = tmp_path_factory.mktemp("concurrent")
    recipe = tiny("shared")
    recipe["stages"] = CHEAP
    rfile = write_project(tmp / "project", recipe, calibration=False)
    store_dir = tmp / "store"
    runs = [Run(rfile, tmp / f"runs{i}", "--store", str(store_dir)) for i in (1, 2)]
    rcs = [r.wait() for r in runs]
    return {"tmp": tmp, "rfile": rfile, "store": Store(store_dir), "rcs": rcs, "logs": [r.log for r in runs]}


def test_concurrent_runs_share_each_stage(shared_store):
    logs = shared_store["logs"]
    assert shared_store["rcs"] == [0, 0], "\n\n".join(logs)
    for s in CHEAP:
        ran = [log.count(running(s["name"], s["type"])) for log in logs]
        reused = [log.count(reusing(s["name"], s["type"])) for log in logs]
        assert sum(ran) == 1 and sum(reused) == 1 and ran != reused, (s["name"], ran, reused)
    store = shared_store["store"]
    for p in plan(load_recipe(shared_store["rfile"])):
        assert_files_match_manifest(store, p.key)
    assert not list(store.root.glob(".tmp-*"))


def test_tampered_model_file_fails_the_run_and_force_rebuilds_it(shared_store):
    store, rfile = shared_store["store"], shared_store["rfile"]
    keys = {p.name: p.key for p in plan(load_recipe(rfile))}
    weights = store.folder(keys["finetune"]) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2: len(data) // 2 + 8] = bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 8])
    weights.write_bytes(bytes(data))                                      # same size, other bytes
    runs = shared_store["tmp"] / "runs3"

    bad = Run(rfile, runs, "--store", str(store.root))
    assert bad.wait() == 1
    assert str(weights) in bad.log and "corrupt" in bad.log and "--force finetune" in bad.log, bad.log[-3000:]

    forced = Run(rfile, runs, "--store", str(store.root), "--force", "finetune")
    assert forced.wait() == 0, forced.log[-3000:]
    for s in CHEAP:                                # the corrupted copy is never read: all three rebuilt
        assert running(s["name"], s["type"]) in forced.log
    assert store.get(keys["finetune"]) is not None
    assert_files_match_manifest(store, keys["finetune"])
    assert not list(store.root.glob(".old-*")) and not list(store.root.glob(".tmp-*"))

    again = Run(rfile, runs, "--store", str(store.root))
    assert again.wait() == 0 and all(reusing(s["name"], s["type"]) in again.log for s in CHEAP)
