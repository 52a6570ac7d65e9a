"""adapt stage: masked-LM pre-training on in-domain text, then finetune on @adapt. Real MiniLM, real text."""

from __future__ import annotations

import bz2
import gzip
import json

import pytest
import torch

from edgeft.data.unlabelled import formats, header, read_texts
from edgeft.errors import RecipeError
from edgeft.ops.mlm import carried_over, head_module, head_status, masked_lm_loss, windows
from edgeft.recipe import validate_recipe
from tests.conftest import small_recipe

POOLER = ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]


def adapt_recipe(*stages, **over) -> dict:
    return small_recipe(stages=list(stages) or [{"name": "adapt", "type": "adapt"},
                                                {"name": "finetune", "type": "finetune", "epochs": 1}], **over)


def problems(raw, check_data=True) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as e:
        validate_recipe(raw, check_data=check_data)
    return e.value.problems


def has(probs, path, words) -> bool:
    return any(p == path and words in r for p, r in probs)


def plot_summaries(n: int) -> list[str]:
    """Real in-domain text: the movie plot summaries that ship beside the Rotten Tomatoes snippets."""
    import pandas as pd

    from edgeft.data.text import rotten_tomatoes_path

    df = pd.read_csv(rotten_tomatoes_path())
    return [" ".join(t.split()) for t in df[df.category == "plot"].text.head(n)]


# ------------------------------------------------------------------ pure pieces

def test_windows_keep_every_token():
    assert windows(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert windows([], 3) == []
    with pytest.raises(ValueError):
        windows([1], 0)


def test_head_status():
    assert head_status([], "bert") == ("from checkpoint", [])
    new = ["cls.predictions.bias", "cls.predictions.transform.dense.weight"]
    assert head_status(new + ["bert.embeddings.x"], "bert") == ("new", sorted(new))
    assert head_status(["cls.predictions.decoder.bias"], "bert")[0] == "partly new"


def test_carried_over_takes_only_what_the_target_lacks():
    src = {"embeddings.w": 1, "pooler.dense.weight": 2}
    assert carried_over(src, ["bert.embeddings.w", "cls.x"], "bert") == {"bert.pooler.dense.weight": 2}


def test_text_files(tmp_path):
    assert formats(tmp_path / "a.csv.bz2") == (".csv", ".bz2")
    assert formats(tmp_path / "notes.txt") == (".txt", "")
    lines = tmp_path / "t.txt.gz"
    with gzip.open(lines, "wt") as fh:
        fh.write("first text\n\n  second text  \n")
    assert read_texts(lines) == ["first text", "second text"]
    csv = tmp_path / "t.csv.bz2"
    with bz2.open(csv, "wt") as fh:
        fh.write('id,body\n1,"a, quoted text"\n2,\n3,plain\n')
    assert header(csv) == ["id", "body"]
    assert read_texts(csv, "body") == ["a, quoted text", "plain"]
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps({"body": b, "n": i}) for i, b in enumerate(["x y", "z"])) + "\n")
    assert header(jl) == ["body", "n"] and read_texts(jl, "body") == ["x y", "z"]


def test_masked_only_loss_equals_the_full_loss(minilm_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(minilm_path)
    model = AutoModelForMaskedLM.from_pretrained(minilm_path).eval()
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=0.3, seed=0)(
        [tok(t, truncation=True, max_length=32) for t in plot_summaries(16)])
    assert (batch["labels"] != -100).sum() > 20
    with torch.no_grad():
        full = model(**batch).loss
        fast = masked_lm_loss(model, batch, head_module(model))
    assert head_module(model) is model.cls
    assert torch.allclose(full, fast, atol=1e-5), (full, fast)


def test_long_texts_become_windows_and_whole_words_mask_together(minilm_path):
    from transformers import AutoTokenizer

    from edgeft.stages.adapt import AdaptConfig, collator, encode

    tok = AutoTokenizer.from_pretrained(minilm_path)
    texts = plot_summaries(4)
    n_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert max(n_tokens) > 60
    seqs = encode(tok, texts, 32, whole_word=True)
    assert all(len(s["input_ids"]) <= 32 for s in seqs)
    assert sum(len(s["input_ids"]) - 2 for s in seqs) == sum(n_tokens)       # nothing dropped
    assert len(seqs) == sum(-(-n // 30) for n in n_tokens)

    cfg = AdaptConfig(name="a", type="adapt", whole_word_mask=True, mlm_probability=0.4)
    batch = collator(tok, cfg, seed=0)(seqs)
    pieces = 0
    for s, labels in zip(seqs, batch["labels"]):
        masked = (labels[:len(s["input_ids"])] != -100).tolist()
        for i in range(2, len(masked) - 1):       # a word piece is masked exactly when its word start is
            if tok.convert_ids_to_tokens(s["input_ids"][i]).startswith("##"):
                pieces += 1
                assert masked[i] == masked[i - 1], tok.convert_ids_to_tokens(s["input_ids"][i - 1:i + 1])
    assert pieces > 10 and (batch["labels"] != -100).any()


# ------------------------------------------------------------------ load-time errors

def test_adapt_recipe_validates_with_files(tmp_path):
    txt, csv = tmp_path / "more.txt", tmp_path / "x.csv"
    txt.write_text("one text\nanother\n")
    csv.write_text("id,body\n1,hello there\n")
    text = [{"split": "train"}, {"file": str(txt)}, {"file": str(csv), "column": "body"}]
    r = validate_recipe(adapt_recipe({"name": "adapt", "type": "adapt", "text": text},
                                     {"name": "finetune", "type": "finetune"}))
    assert r.stages[0].produces() == "encoder" and r.stages[1].input is None


@pytest.mark.parametrize("text,path,words", [
    ([{"file": "nope.txt"}], "stages[0].text[0].file", "file not found"),
    ([{"split": "train"}, {"file": "{csv}", "column": "text"}], "stages[0].text[1].column",
     "column 'text' not in x.csv (columns: id, body)"),
    ([{"file": "{csv}"}], "stages[0].text[0].column", "is a table: name the column"),
    ([{"file": "{txt}", "column": "body"}], "stages[0].text[0].column", "read one text per line"),
    ([{"split": "test"}], "stages[0].text[0]", "scored on them"),
    ([{"split": "train", "file": "{txt}"}], "stages[0].text[0]", "either `split`"),
    ([], "stages[0].text", "at least 1"),
])
def test_bad_text_sources(tmp_path, text, path, words):
    txt, csv = tmp_path / "more.txt", tmp_path / "x.csv"
    txt.write_text("one text\n")
    csv.write_text("id,body\n1,hello\n")
    for t in text:
        if "file" in t:
            t["file"] = t["file"].format(csv=csv, txt=txt) if "{" in t["file"] else str(tmp_path / t["file"])
    got = problems(adapt_recipe({"name": "adapt", "type": "adapt", "text": text}))
    assert has(got, path, words), got


def test_adapt_output_only_feeds_finetune():
    got = problems(adapt_recipe({"name": "adapt", "type": "adapt"},
                                {"name": "onnx", "type": "export", "input": "@adapt"},
                                {"name": "bench", "type": "benchmark", "artifacts": ["@adapt"], "targets": ["pytorch"]},
                                {"name": "prune", "type": "prune", "heads": 0.5}))
    assert has(got, "stages[1].input", "@adapt produces a 'encoder' artifact; this accepts torch"), got
    assert has(got, "stages[1].input", "fine-tune it first"), got
    assert has(got, "stages[2].artifacts[0]", "produces a 'encoder' artifact"), got
    # a stage without `input` takes the previous model stage: after adapt, that is @adapt
    got = problems(adapt_recipe({"name": "adapt", "type": "adapt"}, {"name": "prune", "type": "prune", "heads": 0.5}))
    assert has(got, "stages[1].input", "@adapt produces a 'encoder' artifact"), got


def test_image_recipe_cannot_adapt():
    from tests.unit.test_image_data import image_recipe

    raw = image_recipe(stages=[{"name": "adapt", "type": "adapt"}, {"name": "finetune", "type": "finetune"}])
    got = problems(raw, check_data=False)
    assert has(got, "stages[0].type", "text encoder; this recipe's task is image-classification"), got


def test_text_files_key_by_content_not_path(tmp_path):
    from edgeft.runner import plan

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for d in (a, b):
        (d / "more.txt").write_text("the same text\n")

    def key(path):
        r = adapt_recipe({"name": "adapt", "type": "adapt", "text": [{"file": str(path)}]})
        return plan(validate_recipe(r))[0].key

    assert key(a / "more.txt") == key(b / "more.txt")
    (b / "more.txt").write_text("another text\n")
    assert key(a / "more.txt") != key(b / "more.txt")


# ------------------------------------------------------------------ a real adapt run, then finetune on it

@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    from edgeft.runner import run_recipe

    tmp = tmp_path_factory.mktemp("adapt")
    plots = tmp / "plots.txt"
    plots.write_text("\n".join(plot_summaries(60)) + "\n")
    r = adapt_recipe({"name": "adapt", "type": "adapt", "max_steps": 30, "batch_size": 16, "lr": 1e-4,
                      "held_out": 32, "text": [{"split": "train"}, {"file": str(plots)}]},
                     {"name": "finetune", "type": "finetune", "input": "@adapt", "epochs": 1, "batch_size": 16},
                     data={"source": "builtin:rotten_tomatoes", "max_length": 32,
                           "max_samples": {"train": 160, "validation": 32, "test": 32}})
    recipe = validate_recipe(r)
    result = run_recipe(recipe, runs_dir=tmp / "runs", fail_fast=True)
    return recipe, result, tmp


@pytest.mark.slow
def test_adapt_learns_the_domain(adapted):
    _, result, tmp = adapted
    art = result.artifacts["adapt"]
    m = art.meta
    assert art.kind == "encoder"
    assert m["mlm_head"] == "new" and "cls.predictions.transform.dense.weight" in m["mlm_head_new_keys"]
    assert m["carried_over"] == POOLER
    assert m["steps"] == 30 and m["texts"]["per_source"] == {"split:train": 160, f"file:{tmp / 'plots.txt'}": 60}
    assert m["texts"]["held_out"] == 22 and m["heldout_masked_tokens"] > 30
    # the new head starts near chance over 30k tokens; 30 steps must bring the held-out loss well down
    assert m["heldout_mlm_loss_before"] > 9
    assert m["heldout_mlm_loss_after"] < m["heldout_mlm_loss_before"] - 1.5, m
    assert m["heldout_perplexity_after"] < m["heldout_perplexity_before"]
    assert m["tokens"] > 160 * 10 and m["train_wall_s"] > 0
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (art.path / f).is_file()


@pytest.mark.slow
def test_finetune_on_adapt_loads_the_adapted_encoder(adapted, minilm_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    from edgeft.context import Context
    from edgeft.stages.training import load_input

    recipe, result, tmp = adapted
    art = result.artifacts["adapt"]
    ctx = Context(recipe, tmp / "runs", tmp / "scratch", "k", "finetune", "finetune", [art.key])
    _, _, clf = load_input({"input": art}, ctx)
    adapted_mlm = AutoModelForMaskedLM.from_pretrained(art.path)
    original = AutoModel.from_pretrained(minilm_path)
    enc = clf.bert.state_dict()
    changed = 0
    for k, v in adapted_mlm.bert.state_dict().items():
        assert torch.equal(enc[k], v), k                       # the classifier's encoder is the adapted one
        changed += not torch.equal(v, original.state_dict()[k])
    assert changed > 50                                        # ... and not the original's
    assert torch.equal(clf.bert.pooler.dense.weight, original.pooler.dense.weight)   # pooler carried over
    assert clf.classifier.out_features == 2
    ft = result.artifacts["finetune"]
    assert ft.kind == "torch" and ft.parents == [art.key] and ft.meta["label_names"] == ["rotten", "fresh"]
