"""Runner: a failed branch is reported, not fatal; --fail-fast stops; a re-run retries only what failed."""

from __future__ import annotations

import json

import pytest

from edgeft import stages as registry
from edgeft.errors import ExportParityError
from edgeft.recipe import validate_recipe
from edgeft.runner import plan, run_recipe
from tests.conftest import ROOT, small_recipe


def branching_recipe():
    r = small_recipe()
    r["stages"] = [
        {"name": "finetune", "type": "finetune", "epochs": 1},
        {"name": "onnx", "type": "export"},
        {"name": "int8", "type": "quantize", "method": "dynamic"},
        {"name": "int8-more", "type": "quantize", "input": "@onnx", "method": "dynamic", "per_channel": False},
        {"name": "after-int8", "type": "export", "input": "@finetune", "opset": 17},   # independent of int8
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@onnx", "@int8", "@int8-more"],
         "targets": ["pytorch", "cpu"]},
    ]
    return validate_recipe(r, base_dir=ROOT)


def fake_stages(fail: set[str], calls: list):
    """Stand-ins that write a file and return an artifact; `fail` names the stages that raise a parity error."""
    def run_function(stage_type):
        def run(cfg, inputs, ctx):
            calls.append(cfg.name)
            (ctx.out_dir / "weights.bin").write_bytes(cfg.name.encode())
            if cfg.name in fail:
                raise ExportParityError(f"{cfg.name}: INT8", {"agreement": 0.91, "max_abs_diff": 0.3, "n": 64},
                                        ["argmax agreement 0.9100 < 0.9500 on 64 samples"])
            if stage_type == "benchmark":
                seen = [a.stage for a in inputs["artifacts"]]
                (ctx.out_dir / "report.json").write_text(json.dumps(
                    {"rows": [], "measured": seen, "failed_stages": ctx.failures}))
                return ctx.artifact("report", file="report.json")
            return ctx.artifact("torch" if stage_type == "finetune" else "onnx")
        return run
    return run_function


def test_a_failed_stage_fails_its_branch_only(tmp_path, monkeypatch):
    recipe, calls = branching_recipe(), []
    monkeypatch.setattr(registry, "run_function", fake_stages({"int8"}, calls))
    res = run_recipe(recipe, runs_dir=tmp_path)
    assert not res.ok and set(res.failed) == {"int8"} and res.blocked == {}
    assert res.failed["int8"]["figures"]["agreement"] == 0.91
    assert "argmax agreement 0.9100 < 0.9500" in res.failed["int8"]["error"]
    # every other stage ran, in order; the benchmark measured what exists
    assert calls == ["finetune", "onnx", "int8", "int8-more", "after-int8", "bench"]
    report = json.loads(res.artifacts["bench"].main_path.read_text())
    assert report["measured"] == ["finetune", "onnx", "int8-more"]
    assert [f["stage"] for f in report["failed_stages"]] == ["int8"]
    md = (tmp_path / recipe.name / "report.md").read_text()
    assert "Failed stages" in md and "int8" in md and "agreement 0.91" in md
    state = json.loads((tmp_path / recipe.name / "run.json").read_text())
    assert state["status"] == "failed"
    assert state["stages"]["int8"]["status"] == "failed"
    assert state["stages"]["int8"]["error_type"] == "ExportParityError"
    assert state["stages"]["bench"]["left_out"] == ["int8"]
    # the benchmark without int8 has its own key, not the full benchmark's
    full_key = {p.name: p.key for p in plan(recipe)}["bench"]
    assert state["stages"]["bench"]["key"] != full_key and res.artifacts["bench"].key != full_key

    # a re-run retries only what failed; once it passes, the benchmark is redone with it
    calls.clear()
    monkeypatch.setattr(registry, "run_function", fake_stages(set(), calls))
    res = run_recipe(recipe, runs_dir=tmp_path)
    assert res.ok and calls == ["int8", "bench"]
    assert res.artifacts["bench"].key == full_key
    assert json.loads(res.artifacts["bench"].main_path.read_text())["measured"] == ["finetune", "onnx", "int8",
                                                                                     "int8-more"]


def test_stages_that_need_a_failed_stage_are_not_run(tmp_path, monkeypatch):
    recipe, calls = branching_recipe(), []
    monkeypatch.setattr(registry, "run_function", fake_stages({"onnx"}, calls))
    res = run_recipe(recipe, runs_dir=tmp_path)
    assert set(res.failed) == {"onnx"}
    assert res.blocked == {"int8": ["onnx"], "int8-more": ["onnx"]}
    assert calls == ["finetune", "onnx", "after-int8", "bench"]
    report = json.loads(res.artifacts["bench"].main_path.read_text())
    assert report["measured"] == ["finetune"]
    assert {f["stage"] for f in report["failed_stages"]} == {"onnx", "int8", "int8-more"}


def test_fail_fast_stops_at_the_first_failure(tmp_path, monkeypatch):
    recipe, calls = branching_recipe(), []
    monkeypatch.setattr(registry, "run_function", fake_stages({"int8"}, calls))
    with pytest.raises(ExportParityError):
        run_recipe(recipe, runs_dir=tmp_path, fail_fast=True)
    assert calls == ["finetune", "onnx", "int8"]
    state = json.loads((tmp_path / recipe.name / "run.json").read_text())
    assert state["status"] == "interrupted" and state["stages"]["int8"]["status"] == "failed"
    assert state["stages"]["bench"]["status"] == "pending"


def test_cli_exits_1_and_says_what_failed(tmp_path, monkeypatch, capsys):
    import yaml

    from edgeft.cli import main

    recipe = branching_recipe()
    monkeypatch.setattr(registry, "run_function", fake_stages({"int8"}, []))
    rfile = tmp_path / "r.yaml"
    raw = small_recipe()
    raw["stages"] = [s.model_dump(mode="json", exclude_defaults=True) | {"type": s.type} for s in recipe.stages]
    rfile.write_text(yaml.safe_dump(raw))
    assert main(["run", str(rfile), "--runs", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "int8" in out and "argmax agreement" in out and "report.md" in out
