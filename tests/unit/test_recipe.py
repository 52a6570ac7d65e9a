"""Recipe validation: every bad recipe fails before any work, naming the key path and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgeft.cli import main
from edgeft.errors import RecipeError
from edgeft.recipe import load_recipe, validate_recipe
from tests.conftest import ROOT, small_recipe

CALIB = str(ROOT / "calibration" / "rotten_tomatoes-256.yaml")


def full_recipe() -> dict:
    r = small_recipe()
    r["stages"] = [
        {"name": "finetune", "type": "finetune", "epochs": 1},
        {"name": "onnx", "type": "export", "input": "@finetune"},
        {"name": "int8", "type": "quantize", "input": "@onnx", "method": "static", "calibration": CALIB},
        {"name": "bench", "type": "benchmark", "artifacts": ["@finetune", "@onnx", "@int8"],
         "targets": ["pytorch", "cpu"]},
    ]
    return r


def write_csv(path: Path, header: str = "text,label", rows: int = 6) -> Path:
    lines = [header] + [f"sentence number {i},{'pos' if i % 2 else 'neg'}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _files(tmp_path):
    return tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"


def mutate(fn):
    def make(tmp_path):
        r = full_recipe()
        fn(r, tmp_path)
        return r
    return make


def _files_recipe(r, tmp_path, header="text,label"):
    a, b, c = _files(tmp_path)
    for p in (a, b, c):
        write_csv(p, header)
    r["data"] = {"train": str(a), "validation": str(b), "test": str(c), "max_length": 32}
    # a files recipe cannot use the builtin calibration manifest
    r["stages"] = [s for s in r["stages"] if s["type"] != "quantize"]
    r["stages"][-1]["artifacts"] = ["@finetune", "@onnx"]


def _bad_calibration(r, tmp_path, **fields):
    m = {"source": "builtin:rotten_tomatoes", "split": "train", "num_samples": 8, "seed": 0}
    m.update(fields)
    p = tmp_path / "calib.yaml"
    p.write_text(yaml.safe_dump(m))
    r["stages"][2]["calibration"] = str(p)


# (id, mutation, expected key path, expected words in the reason)
BAD = [
    ("unknown-stage-type", mutate(lambda r, t: r["stages"][1].update(type="exprot")),
     "stages[1].type", "unknown stage type 'exprot'"),
    ("misspelled-key", mutate(lambda r, t: r["stages"][0].update(epoch=3)),
     "stages[0].epoch", "unknown key"),
    ("misspelled-top-level-key", mutate(lambda r, t: r.update(seeds=1)), "seeds", "unknown key"),
    ("missing-data-file", mutate(lambda r, t: (_files_recipe(r, t), r["data"].update(test=str(t / "nope.csv")))),
     "data.test", "file not found"),
    ("label-column-absent", mutate(lambda r, t: (_files_recipe(r, t), r["data"].update(label_column="stars"))),
     "data.label_column", "column 'stars' not in"),
    ("text-column-absent", mutate(lambda r, t: _files_recipe(r, t, header="sentence,label")),
     "data.text_column", "column 'text' not in"),
    ("ref-to-later-stage", mutate(lambda r, t: r["stages"][1].update(input="@int8")),
     "stages[1].input", "runs later"),
    ("ref-to-unknown-stage", mutate(lambda r, t: r["stages"][1].update(input="@finetuen")),
     "stages[1].input", "does not name a stage"),
    ("wrong-artifact-kind", mutate(lambda r, t: r["stages"][2].update(input="@finetune")),
     "stages[2].input", "produces a 'torch' artifact; this accepts onnx"),
    ("num-samples-not-positive", mutate(lambda r, t: _bad_calibration(r, t, num_samples=0)),
     "stages[2].calibration.num_samples", "greater than 0"),
    ("calibration-missing", mutate(lambda r, t: r["stages"][2].update(calibration=str(t / "none.yaml"))),
     "stages[2].calibration", "calibration manifest not found"),
    ("calibration-other-data", mutate(lambda r, t: _bad_calibration(r, t, source="builtin:imdb")),
     "stages[2].calibration", "drawn from 'builtin:imdb'"),
    ("static-without-calibration", mutate(lambda r, t: r["stages"][2].pop("calibration")),
     "stages[2].calibration", "needs a calibration manifest"),
    ("method-misspelled", mutate(lambda r, t: r["stages"][2].update(method="statc")),
     "stages[2].method", "'statc' is not one of dynamic, static"),
    ("unknown-target", mutate(lambda r, t: r["stages"][3].update(targets=["cpu", "tpu"])),
     "stages[3].targets[1]", "unknown target 'tpu'"),
    ("artifact-no-target-runs-it", mutate(lambda r, t: r["stages"][3].update(targets=["pytorch"])),
     "stages[3].artifacts[1]", "none of the targets"),
    ("duplicate-stage-name", mutate(lambda r, t: r["stages"][2].update(name="onnx", input=None)),
     "stages[2].name", "duplicate stage name 'onnx'"),
    ("unknown-task", mutate(lambda r, t: r.update(task="summarization")),
     "task", "'summarization' is not one of text-classification"),
    ("negative-lr", mutate(lambda r, t: r["stages"][0].update(lr=-1e-5)),
     "stages[0].lr", "greater than 0"),
    ("max-length-zero", mutate(lambda r, t: r["data"].update(max_length=0)),
     "data.max_length", "greater than 0"),
    ("unknown-builtin-data", mutate(lambda r, t: r["data"].update(source="builtin:imdb")),
     "data.source", "unknown builtin dataset 'imdb'"),
    ("unknown-shipped-model", mutate(lambda r, t: r["model"].update(source="shipped:bert-huge")),
     "model.source", "unknown shipped model 'bert-huge'"),
    ("model-folder-missing", mutate(lambda r, t: r["model"].update(source=str(t / "my-model"))),
     "model.source", "not found"),
    ("missing-name", mutate(lambda r, t: r.pop("name")), "name", "required key is missing"),
    ("quantize-already-int8", mutate(lambda r, t: r["stages"].insert(3, {"name": "int8b", "type": "quantize",
                                                                       "input": "@int8", "method": "dynamic"})),
     "stages[3].input", "already INT8"),
    ("split-leaves-no-train", mutate(lambda r, t: r["data"].update(split={"validation": 0.5, "test": 0.6})),
     "data.split", "sum < 1"),
    ("source-and-files", mutate(lambda r, t: r["data"].update(train="x.csv")),
     "data", "not both"),
    ("export-opset-too-old", mutate(lambda r, t: r["stages"][1].update(opset=9)),
     "stages[1].opset", "greater than or equal to 14"),
    ("no-stages", mutate(lambda r, t: r.update(stages=[])), "stages", "at least 1"),
    ("export-of-adapt", mutate(lambda r, t: (r["stages"].insert(0, {"name": "adapt", "type": "adapt"}),
                                             r["stages"][2].update(input="@adapt"))),
     "stages[2].input", "@adapt produces a 'encoder' artifact; this accepts torch"),
    ("adapt-file-missing", mutate(lambda r, t: r["stages"].insert(0, {"name": "adapt", "type": "adapt",
                                                                     "text": [{"file": str(t / "more.txt")}]})),
     "stages[0].text[0].file", "file not found"),
]


@pytest.mark.parametrize("case,make,path,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_recipe_fails_with_key_path_and_writes_nothing(tmp_path, capsys, case, make, path, reason):
    recipe = make(tmp_path)
    rfile = tmp_path / "recipe.yaml"
    rfile.write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(RecipeError) as ei:
        load_recipe(rfile)
    problems = ei.value.problems
    assert any(p == path and reason in r for p, r in problems), f"expected {path}: {reason}; got {problems}"
    assert f"{path}: " in str(ei.value)

    # the CLI: exit code 2, message on stderr, nothing written for validate nor run
    before = set(tmp_path.rglob("*"))
    runs = tmp_path / "runs"
    assert main(["validate", str(rfile)]) == 2
    assert main(["run", str(rfile), "--runs", str(runs)]) == 2
    err = capsys.readouterr().err
    assert path in err and reason in err
    assert not runs.exists()
    assert set(tmp_path.rglob("*")) == before


def test_all_problems_reported_at_once(tmp_path):
    r = full_recipe()
    r["stages"][0]["epoch"] = 3
    r["stages"][2]["method"] = "statc"
    r["stages"][3]["targets"] = ["tpu"]
    with pytest.raises(RecipeError) as ei:
        validate_recipe(r)
    paths = {p for p, _ in ei.value.problems}
    assert {"stages[0].epoch", "stages[2].method"} <= paths
    # cross-stage checks still run for the stages that parsed
    assert "stages[3].targets[0]" in paths


def test_good_recipe_and_defaults():
    r = validate_recipe(full_recipe(), base_dir=ROOT)
    assert [s.name for s in r.stages] == ["finetune", "onnx", "int8", "bench"]
    assert r.stages[0].lr == 5e-5 and r.stages[1].key_config()["parity"]["min_agreement"] == 0.999


def test_default_input_is_previous_model_stage():
    from edgeft.runner import _input_refs

    r = full_recipe()
    for s in r["stages"][1:3]:
        s.pop("input", None)
    rec = validate_recipe(r, base_dir=ROOT)
    assert _input_refs(rec.stages, 0) == {"input": None}
    assert _input_refs(rec.stages, 1) == {"input": "finetune"}
    assert _input_refs(rec.stages, 2) == {"input": "onnx"}
    assert _input_refs(rec.stages, 3) == {"artifacts": ["finetune", "onnx", "int8"]}


def test_overrides(tmp_path):
    rfile = tmp_path / "r.yaml"
    rfile.write_text(yaml.safe_dump(full_recipe()))
    r = load_recipe(rfile, ["stages.finetune.epochs=3", "data.max_length=16", "stages.2.calibrate_method=entropy"])
    assert r.stages[0].epochs == 3 and r.data.max_length == 16 and r.stages[2].calibrate_method == "entropy"
    with pytest.raises(RecipeError, match="no stage named 'nope'"):
        load_recipe(rfile, ["stages.nope.epochs=3"])
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(rfile, ["stages.finetune.epochs"])


def test_recipe_file_problems(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(RecipeError, match="a mapping"):
        load_recipe(bad)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    r = load_recipe(path)
    assert r.stages
