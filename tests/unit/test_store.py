"""Store: stable keys that chain, atomic commits, and resuming after an interrupted stage."""

from __future__ import annotations

import json
import os

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


def test_commit_is_atomic(tmp_path):
    from edgeft.artifact import Artifact

    store = Store(tmp_path)
    tmp = store.begin("k1")
    (tmp / "model.onnx").write_bytes(b"x" * 10)
    assert store.get("k1") is None                    # not visible before commit
    art = store.commit(tmp, Artifact("k1", "onnx", "s", "export", tmp, "model.onnx", {"precision": "fp32"}))
    assert not tmp.exists() and art.path == tmp_path / "k1"
    got = store.get("k1")
    assert got.meta == {"precision": "fp32"} and got.main_path.read_bytes() == b"x" * 10
    assert json.loads((tmp_path / "k1" / MANIFEST).read_text())["key"] == "k1"
    # a folder without its manifest (a crash between rename and manifest cannot happen, but a
    # hand-copied or truncated folder can) is never read back
    (tmp_path / "k2").mkdir()
    (tmp_path / "k2" / "model.onnx").write_bytes(b"half")
    assert store.get("k2") is None


def test_stale_temp_folders_are_cleaned(tmp_path):
    store = Store(tmp_path)
    dead = tmp_path / ".tmp-abc-999999999"
    dead.mkdir()
    mine = store.begin("xyz")
    removed = store.clean_stale()
    assert dead in removed and not dead.exists() and mine.exists()


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
