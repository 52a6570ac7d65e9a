"""`edgeft init DATA`: look at a user's data and write a starter recipe that runs as written.

A table (CSV / TSV / JSONL / JSON, or a `datasets` folder saved with `save_to_disk`) or an image
folder (one sub-folder per class, or train/ and test/ (and validation/) folders of class folders,
what `data/images.py` loads) is inspected: `inspect_table` / `inspect_image_folder` return a
`Findings` (rows, classes and their balance, text lengths in MiniLM tokens or image sizes, and the
suggested `max_length` / `image_size`); `render_recipe` turns it into a commented recipe with the
shipped model and the default compression path; `write_starter` writes it with its calibration
manifest and loads it back (data checks on) before it returns.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, EdgeftError, RecipeError

TEXT_MODEL = "shipped:all-MiniLM-L6-v2"
IMAGE_MODEL = "shipped:efficientnet-lite0"
TASK_ALIASES = {"text": "text-classification", "image": "image-classification",
                "text-classification": "text-classification", "image-classification": "image-classification"}
# column names that say "this is the label" (compared lower-cased)
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y", "tag", "intent",
               "emotion", "polarity", "stance", "topic", "gold_label", "class_label", "label_id")
MAX_CLASSES = 500
TOKENIZED_ROWS = 20_000        # token lengths are measured on at most this many texts (a seeded sample)
MEASURED_IMAGES = 2_000        # image sizes: the same
COVER = 0.99                   # the suggested max_length covers this share of the texts
CALIBRATION_SAMPLES = 256
MIN_STEPS = 150                # the starter trains for at least about this many optimizer steps (within limits)


@dataclass
class Findings:
    task: str
    path: Path
    rows: int                                   # usable examples (images: all splits)
    class_counts: dict[str, int]                # label -> examples, largest first
    columns: list[str] = field(default_factory=list)
    text_column: str | None = None
    label_column: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)     # reason -> rows the loader will not use
    token_lengths: dict[str, int] = field(default_factory=dict)   # p50, p95, p99, max (with [CLS]/[SEP])
    measured: int = 0                           # texts tokenized / images opened
    max_length: int | None = None
    truncated: float = 0.0                      # share of measured texts longer than max_length
    position_limit: int | None = None
    layout: str = ""                            # images: "class folders" or "train/, test/"
    split_counts: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, str] = field(default_factory=dict)  # smallest / median / largest, WxH
    image_size: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_split_dirs(self) -> bool:
        return bool(self.split_counts)


# ---------------------------------------------------------------------------------------------
# inspection

def inspect_data(path: str | Path, task: str | None = None, text_column: str | None = None,
                 label_column: str | None = None) -> Findings:
    """A table or an image folder, by what `path` is (or by `task`)."""
    path = Path(path)
    if task is not None and task not in TASK_ALIASES:
        raise EdgeftError(f"unknown task {task!r}; use one of {', '.join(TASK_ALIASES)}")
    task = TASK_ALIASES.get(task or "")
    if not path.exists():
        raise DataError(f"{path}: not found")
    hf_folder = path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "state.json",
                                                                       "dataset_dict.json"))
    if task is None:
        task = "image-classification" if path.is_dir() and not hf_folder else "text-classification"
    if task == "image-classification":
        if not path.is_dir():
            raise DataError(f"{path}: an image task needs a folder of class folders (one sub-folder of images per "
                            f"class, or train/ and test/ folders of class folders), not a file")
        if text_column or label_column:
            raise EdgeftError("--text-column / --label-column are for tables; an image folder's classes are its "
                              "sub-folders")
        return inspect_image_folder(path)
    if path.is_dir() and not hf_folder:
        raise DataError(f"{path} is a folder but not a `datasets` folder saved with save_to_disk; text data is a "
                        f"CSV / TSV / JSONL file (drop --task to treat the folder as images)")
    return inspect_table(path, text_column, label_column)


def inspect_table(path: Path, text_column: str | None = None, label_column: str | None = None) -> Findings:
    """Rows, the text and label columns, classes, and token lengths with the shipped MiniLM tokenizer."""
    from .data.text import TABLE_SUFFIXES, read_table

    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"{path}: not a table edgeft reads ({', '.join(TABLE_SUFFIXES)}; compressed files: "
                            f"decompress first) and not an image folder")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
    df = read_table(path)                   # DataError if pandas cannot parse it
    df.columns = [str(c) for c in df.columns]
    columns = list(df.columns)
    if len(df) == 0 or not columns:
        raise DataError(f"{path}: no rows" + (f" (columns: {', '.join(columns)})" if columns else ""))
    for flag, col in (("--text-column", text_column), ("--label-column", label_column)):
        if col is not None and col not in columns:
            raise DataError(f"{flag} {col!r}: no such column in {path.name}; columns: {', '.join(columns)}")
    if text_column and text_column == label_column:
        raise DataError(f"the text and the label column are both {text_column!r}")
    label = label_column or _label_by_name(df, exclude=text_column, where=path.name)
    text = text_column or _text_column(df, exclude=label, where=path.name)
    label = label or _label_by_cardinality(df, exclude=text, where=path.name)

    texts = df[text].astype(str)
    no_text = df[text].isna() | (texts.str.strip() == "")
    no_label = df[label].isna()
    keep = ~(no_text | no_label)
    dropped = {k: int(v.sum()) for k, v in (("empty or missing text", no_text), ("missing label", no_label & ~no_text))
               if v.sum()}
    if not keep.any():
        raise DataError(f"{path}: no row has both a text ({text!r}) and a label ({label!r})")
    labels = df.loc[keep, label]
    counts = {_label_str(k): int(v) for k, v in labels.value_counts().items()}
    rows = int(keep.sum())
    if len(counts) > MAX_CLASSES or (rows > 20 and len(counts) > rows // 2):
        raise DataError(f"{path}: column {label!r} has {len(counts)} distinct values in {rows} rows: not a class "
                        f"label? Pass --label-column (columns: {', '.join(columns)})")
    if len(counts) < 2:
        raise DataError(f"{path}: every row has the same label ({next(iter(counts))!r} in column {label!r}); "
                        f"classification needs at least two classes")
    f = Findings(task="text-classification", path=path, rows=rows, class_counts=counts, columns=columns,
                 text_column=text, label_column=label, dropped=dropped)
    _measure_tokens(f, texts[keep].tolist())
    _class_notes(f)
    return f


def _label_str(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _label_by_name(df, exclude: str | None, where: str) -> str | None:
    named = [c for c in df.columns if c.strip().lower() in LABEL_NAMES and c != exclude]
    if len(named) > 1:
        raise DataError(f"{where}: several columns look like the label ({', '.join(named)}); pass --label-column "
                        f"(columns: {', '.join(df.columns)})")
    return named[0] if named else None


def _text_column(df, exclude: str | None, where: str) -> str:
    """The string column with the longest mean length; a near tie is ambiguous."""
    means = {}
    for c in df.columns:
        if c == exclude:
            continue
        values = df[c].dropna()
        if len(values) and values.map(lambda v: isinstance(v, str)).mean() >= 0.9:
            means[c] = float(values.astype(str).str.len().mean())
    if not means:
        raise DataError(f"{where}: no column holds text (strings); pass --text-column (columns: "
                        f"{', '.join(df.columns)})")
    ranked = sorted(means.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[1][1] >= 0.9 * ranked[0][1]:
        listing = ", ".join(f"{c} (mean {m:.0f} characters)" for c, m in ranked)
        raise DataError(f"{where}: cannot tell the text column: {listing}; pass --text-column")
    return ranked[0][0]


def _label_by_cardinality(df, exclude: str, where: str) -> str:
    """No column named like a label: the one with the fewest distinct values (at least two)."""
    import numpy as np

    card = {}
    for c in df.columns:
        if c == exclude:
            continue
        values = df[c].dropna()
        if values.dtype.kind == "f" and not np.all(np.mod(values.to_numpy(), 1) == 0):
            continue                                # continuous numbers are not classes
        n = values.nunique()
        if 2 <= n <= min(MAX_CLASSES, max(2, len(df) // 2)):
            card[c] = n
    if not card:
        raise DataError(f"{where}: no label column: none is named like one ({', '.join(LABEL_NAMES[:7])}, ...) and "
                        f"no other column has a few repeated values; pass --label-column (columns: "
                        f"{', '.join(df.columns)})")
    lowest = min(card.values())
    tied = [c for c, n in card.items() if n == lowest]
    if len(tied) > 1:
        raise DataError(f"{where}: cannot tell the label column: {', '.join(tied)} each have {lowest} distinct "
                        f"values; pass --label-column (columns: {', '.join(df.columns)})")
    return tied[0]


def _measure_tokens(f: Findings, texts: list[str]) -> None:
    """Token lengths ([CLS] and [SEP] included, nothing truncated) and the suggested max_length."""
    import numpy as np

    from .models import resolve_source

    model_dir = Path(resolve_source(TEXT_MODEL))
    if len(texts) > TOKENIZED_ROWS:
        idx = np.random.default_rng(0).choice(len(texts), size=TOKENIZED_ROWS, replace=False)
        texts = [texts[i] for i in sorted(idx)]
        f.notes.append(f"token lengths measured on a random {TOKENIZED_ROWS:,} of {f.rows:,} texts")
    lengths = np.sort(np.asarray(token_lengths(model_dir, texts)))
    f.measured = len(lengths)
    f.token_lengths = {f"p{q}": int(np.percentile(lengths, q, method="higher")) for q in (50, 95, 99)}
    f.token_lengths["max"] = int(lengths[-1])
    f.position_limit = position_limit(model_dir)
    f.max_length = suggest_max_length(lengths, f.position_limit)
    f.truncated = float(np.mean(lengths > f.max_length))
    if f.max_length == f.position_limit and f.truncated > 1 - COVER:
        f.notes.append(f"{f.truncated:.1%} of the texts are longer than the model's {f.position_limit} positions "
                       f"and are cut there")


def token_lengths(model_dir: Path, texts: list[str]) -> list[int]:
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()      # "longer than the maximum": counting is the point
    try:
        return [len(ids) for ids in tok(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    finally:
        transformers.logging.set_verbosity(level)


def position_limit(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "config.json").read_text())
    return int(cfg.get("max_position_embeddings", 512))


def suggest_max_length(lengths, limit: int, cover: float = COVER, multiple: int = 16) -> int:
    """The smallest multiple of `multiple` that `cover` of the lengths fit in, at most `limit`."""
    ordered = sorted(int(x) for x in lengths)
    need = ordered[max(0, math.ceil(cover * len(ordered)) - 1)]
    return max(multiple, min(limit, -(-need // multiple) * multiple))


def inspect_image_folder(path: Path) -> Findings:
    """Class folders (directly inside, or inside train/ and test/ folders), images per class and sizes."""
    from .data.images import IMAGE_SUFFIXES, class_folders, split_dirs

    path = Path(path)
    dirs = split_dirs(path)
    if dirs:
        parts = {split: class_folders(d) for split, d in dirs.items()}
        layout = ", ".join(f"{d.name}/" for d in dirs.values())
    else:
        parts = {"all": class_folders(path)}
        layout = "class folders"
    train = parts.get("train", parts.get("all"))
    if not train:
        hint = (f"; it holds {', '.join(sorted(p.name for p in path.iterdir()))}" if any(path.iterdir()) else "")
        raise DataError(f"{path}: no class folders (expected one sub-folder of images per class, or train/ and "
                        f"test/ folders of class folders){hint}")
    classes = {name: files for name, files in train.items() if files}
    if not classes:
        raise DataError(f"{path}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(classes) < 2:
        raise DataError(f"{path}: only one class folder with images ({next(iter(classes))}); classification "
                        f"needs at least two")
    for split, by_class in parts.items():
        unknown = [n for n, files in by_class.items() if files and n not in classes]
        if unknown:
            raise DataError(f"{dirs[split]}: class folder(s) {', '.join(unknown)} are not in {dirs['train']}")
    files = [p for by_class in parts.values() for fs in by_class.values() for p in fs]
    counts = {n: len(fs) for n, fs in sorted(classes.items(), key=lambda kv: -len(kv[1]))}
    f = Findings(task="image-classification", path=path, rows=len(files), class_counts=counts, layout=layout,
                 split_counts={s: sum(map(len, bc.values())) for s, bc in parts.items()} if dirs else {})
    _measure_images(f, files)
    empty = [n for n, fs in train.items() if not fs]
    if empty:
        f.notes.append(f"empty class folder(s) ignored: {', '.join(empty)}")
    _class_notes(f)
    return f


def _measure_images(f: Findings, files: list[Path]) -> None:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if len(files) > MEASURED_IMAGES:
        idx = np.random.default_rng(0).choice(len(files), size=MEASURED_IMAGES, replace=False)
        files = [files[i] for i in sorted(idx)]
        f.notes.append(f"image sizes measured on a random {MEASURED_IMAGES:,} of {f.rows:,} images")
    sizes, bad = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                sizes.append(im.size)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            bad.append(f"{p} ({e})")
    if bad:
        raise DataError(f"{len(bad)} image(s) cannot be read: " + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
    f.measured = len(sizes)
    order = sorted(sizes, key=lambda s: s[0] * s[1])
    f.image_sizes = {k: f"{w}x{h}" for k, (w, h) in (("smallest", order[0]), ("median", order[len(order) // 2]),
                                                     ("largest", order[-1]))}
    f.image_size = suggest_image_size(min(order[len(order) // 2]))


def suggest_image_size(median_side: int) -> int:
    """The median image's shorter side rounded up to a multiple of 32, within 64..224 (EfficientNet-Lite0's
    pretraining size): small images are upscaled (28 px -> 64), photos come down to 224."""
    return max(64, min(224, -(-median_side // 32) * 32))


def _class_notes(f: Findings) -> None:
    counts = list(f.class_counts.values())
    smallest_name, smallest = list(f.class_counts.items())[-1]
    if smallest < 10:
        f.notes.append(f"class {smallest_name!r} has only {smallest} example(s): a class needs ~10 or more to reach "
                       f"the train, validation and test splits")
    if counts[0] >= 5 * smallest:
        f.notes.append(f"imbalanced: the largest class has {counts[0] / smallest:.0f}x the examples of the smallest; "
                       f"accuracy alone can hide a class the model never predicts")
    if f.rows < 500:
        f.notes.append(f"only {f.rows} examples: validation and test accuracy will move by several points "
                       f"between seeds")


# ---------------------------------------------------------------------------------------------
# the recipe

def recipe_name(path: Path) -> str:
    stem = path.name.split(".")[0] if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "starter"


def balance(counts: dict[str, int], top: int = 6) -> str:
    total = sum(counts.values())
    parts = [f"{name!r}: {n:,} ({n / total:.0%})" for name, n in list(counts.items())[:top]]
    if len(counts) > top:
        parts.append(f"... {len(counts) - top} more")
    return ", ".join(parts)


def render_recipe(f: Findings, name: str | None = None, data_ref: str | None = None,
                  calibration: str = "calibration.yaml", recipe_path: str = "recipe.yaml") -> str:
    """The starter recipe as YAML text with comments; `data_ref` is the data path as the recipe writes it,
    `calibration` the manifest's, `recipe_path` where the recipe goes (for the command in its header)."""
    name = name or recipe_name(f.path)
    src = json.dumps(data_ref or str(f.path))
    cal = json.dumps(calibration)
    lines = [f"# Starter recipe written by `edgeft init` from {f.path.name}: {f.rows:,} examples, "
             f"{len(f.class_counts)} classes",
             f"# ({balance(f.class_counts, 4)}).",
             f"# Run it with `edgeft run {recipe_path}`; a quicker first try: add -o stages.finetune.epochs=1 "
             f"-o stages.distill.epochs=1.",
             f"# Every INT8 method but `dynamic` calibrates on the samples pinned in {calibration}, written by",
             "# `edgeft init` with this recipe; rewrite it with `edgeft calibration` if you change the data or its "
             "split."]
    text = f.task == "text-classification"
    if text:
        tl = f.token_lengths
        lines.append(f"# Text lengths in MiniLM tokens: p50 {tl['p50']}, p95 {tl['p95']}, p99 {tl['p99']}, "
                     f"max {tl['max']}; max_length {f.max_length} cuts {f.truncated:.1%} of them.")
    lines += [f"name: {name}", _c("seed: 0", "data split, initialisation, shuffling"), f"task: {f.task}"]
    if text:
        lines += [_c(f'model: {{source: "{TEXT_MODEL}"}}', "6-layer BERT, 22.7M params"),
                  "data:",
                  f"  source: {src}",
                  f"  text_column: {json.dumps(f.text_column)}",
                  f"  label_column: {json.dumps(f.label_column)}",
                  _c("  split: {validation: 0.1, test: 0.2}", "fractions of the whole, drawn with the seed"),
                  "  # group_column: COLUMN                 # rows sharing a value (an author, a product) stay in "
                  "one split",
                  _c(f"  max_length: {f.max_length}", f"covers {1 - f.truncated:.1%} of the texts (the model "
                                                     f"takes at most {f.position_limit})")]
    else:
        split = (_c("  split: {validation: 0.1}", "carved out of train/, per class") if f.has_split_dirs else
                 _c("  split: {validation: 0.1, test: 0.2}", "per class, drawn with the seed"))
        lines += [_c(f'model: {{source: "{IMAGE_MODEL}"}}', "mobile CNN, 4.65M params, ImageNet weights"),
                  "data:",
                  _c(f"  source: {src}", f.layout),
                  split,
                  _c(f"  image_size: {f.image_size}", f"images are resized to this square (median image "
                                                      f"{f.image_sizes['median']})")]
    if f.dropped and "drop_invalid" in _data_fields():
        lines.append(_c("  drop_invalid: true", f"{sum(f.dropped.values())} rows without text or label are "
                                                f"dropped and counted"))
    lines.append("stages:")
    lines += (_text_stages if text else _image_stages)(cal, training_plan(f))
    return "\n".join(lines) + "\n"


def _c(code: str, comment: str, column: int = 41) -> str:
    """A YAML line with its comment at `column` (or one space after a longer line)."""
    return f"{code:<{column - 1}} # {comment}"


def _data_fields() -> set[str]:
    from .recipe import DataConfig

    return set(DataConfig.model_fields)


def train_rows(f: Findings) -> int:
    """About how many examples the train split will hold with the recipe's split fractions."""
    if f.has_split_dirs:
        return round(f.split_counts["train"] * (0.9 if "validation" not in f.split_counts else 1.0))
    return round(f.rows * 0.7)


def training_plan(f: Findings) -> dict:
    """Batch size, epochs and lr for the starter: small sets get smaller batches and more epochs, so the
    model sees at least ~MIN_STEPS optimizer steps (420 snippets at batch 32 for 2 epochs, 26 steps, stayed
    at chance; at batch 16, lr 8e-5 it reached 0.70-0.75 validation accuracy by epoch 2-7)."""
    n = max(1, train_rows(f))
    if f.task == "text-classification":
        batch = 32 if n >= 2000 else 16
        lr = "5.0e-5" if n >= 5000 else "8.0e-5"
        low, high = 3, 10
    else:
        batch = 64 if n >= 2000 else 32
        lr = "1.0e-3"
        low, high = 2, 15
    epochs = max(low, min(high, math.ceil(MIN_STEPS / math.ceil(n / batch))))
    return {"train_rows": n, "batch_size": batch, "lr": lr, "epochs": epochs,
            "steps": epochs * math.ceil(n / batch)}


def _text_stages(cal: str, plan: dict) -> list[str]:
    return [
        f"  # fine-tune the pretrained model on your labels: ~{plan['train_rows']:,} training examples,",
        f"  # {plan['epochs']} epochs of batch {plan['batch_size']} (~{plan['steps']:,} optimizer steps); keeps the "
        "epoch with the best validation accuracy",
        f"  - {{name: finetune, type: finetune, epochs: {plan['epochs']}, lr: {plan['lr']}, "
        f"batch_size: {plan['batch_size']}}}",
        "  # ONNX exports, each checked against the torch model (parity gate): fused for ONNX Runtime FP32 and",
        "  # dynamic INT8, unfused for static INT8 and OpenVINO",
        '  - {name: onnx, type: export, input: "@finetune", optimize: true}',
        '  - {name: onnx-plain, type: export, input: "@finetune", optimize: false}',
        "  # INT8: dynamic (no calibration); static QDQ keeping the most sensitive MatMuls in float until",
        "  # validation accuracy is within 1 point of FP32; OpenVINO's NNCF post-training INT8",
        '  - {name: int8-dynamic, type: quantize, input: "@onnx", method: dynamic}',
        '  - {name: int8-static, type: quantize, input: "@onnx-plain", method: static, max_drop: 1.0,',
        f"     fallback_samples: 128, calibration: {cal}}}",
        f'  - {{name: ov-int8, type: quantize, input: "@onnx-plain", method: nncf_ptq, calibration: {cal}}}',
        "  # a smaller student: layers 1 and 4 of 6 dropped, half the heads and 3/4 of every FFN removed,",
        "  # then distilled from the fine-tuned teacher to win the accuracy back",
        '  - {name: prune, type: prune, input: "@finetune", drop_layers: [1, 4], heads: 0.5, ffn: 0.75}',
        f'  - {{name: distill, type: distill, input: "@prune", teacher: "@finetune", epochs: {max(4, plan["epochs"])}, '
        f'batch_size: {plan["batch_size"]}}}',
        '  - {name: student-onnx, type: export, input: "@distill", optimize: true}',
        '  - {name: student-int8, type: quantize, input: "@student-onnx", method: dynamic}',
        '  - {name: student-onnx-plain, type: export, input: "@distill", optimize: false}',
        '  - {name: student-ov-int8, type: quantize, input: "@student-onnx-plain", method: nncf_ptq,',
        f"     calibration: {cal}}}",
        "  # every artifact on every target that runs it; speedups and accuracy changes against the",
        "  # fine-tuned model in PyTorch. More: quantization-aware training (a `qat` stage) and NNCF accuracy",
        "  # control, see recipes/minilm-rotten-tomatoes.yaml",
        "  - name: bench",
        "    type: benchmark",
        '    artifacts: ["@finetune", "@onnx", "@int8-dynamic", "@int8-static", "@ov-int8",',
        '                "@distill", "@student-onnx", "@student-int8", "@student-ov-int8"]',
        "    targets: [pytorch, cpu, openvino]",
        '    reference: "@finetune"',
    ]


def _image_stages(cal: str, plan: dict) -> list[str]:
    return [
        f"  # fine-tune the ImageNet-pretrained CNN on your classes: ~{plan['train_rows']:,} training images,",
        f"  # {plan['epochs']} epochs of batch {plan['batch_size']} (~{plan['steps']:,} optimizer steps); keeps the "
        "epoch with the best validation accuracy",
        f"  - {{name: finetune, type: finetune, epochs: {plan['epochs']}, lr: {plan['lr']}, "
        f"batch_size: {plan['batch_size']}, eval_batch_size: 256}}",
        "  # ONNX export, checked against the torch model (parity gate)",
        '  - {name: onnx, type: export, input: "@finetune"}',
        "  # INT8: static QDQ (entropy calibration) keeping the most sensitive convolutions in float until",
        "  # validation accuracy is within 0.5 points of FP32; OpenVINO's NNCF post-training INT8",
        '  - {name: int8, type: quantize, input: "@onnx", method: static, calibrate_method: entropy,',
        f"     calibration: {cal}, max_drop: 0.5, parity: {{min_agreement: 0.9}}}}",
        f'  - {{name: ov-int8, type: quantize, input: "@onnx", method: nncf_ptq, calibration: {cal}}}',
        "  # a smaller student: 30% of every convolution's channels removed, then distilled from the teacher",
        f'  - {{name: prune, type: prune, input: "@finetune", channels: 0.3, batch_size: {plan["batch_size"]}}}',
        f'  - {{name: distill, type: distill, input: "@prune", teacher: "@finetune", epochs: {plan["epochs"]}, '
        'lr: 1.0e-3,',
        f'     batch_size: {plan["batch_size"]}, eval_batch_size: 256, temperature: 2.0, alpha: 0.5}}',
        '  - {name: student-onnx, type: export, input: "@distill"}',
        '  - {name: student-int8, type: quantize, input: "@student-onnx", method: static, calibrate_method: entropy,',
        f"     calibration: {cal}, parity: {{min_agreement: 0.9}}}}",
        "  # every artifact on every target that runs it; speedups and accuracy changes against the",
        "  # fine-tuned model in PyTorch",
        "  - name: bench",
        "    type: benchmark",
        '    artifacts: ["@finetune", "@onnx", "@int8", "@ov-int8", "@distill", "@student-onnx", "@student-int8"]',
        "    targets: [pytorch, cpu, openvino]",
        '    reference: "@finetune"',
    ]


# ---------------------------------------------------------------------------------------------
# writing

def calibration_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.calibration.yaml")


def _ref(target: Path, recipe_dir: Path) -> str:
    """How the recipe names `target`: relative to the recipe's folder when inside it, else absolute."""
    rel = os.path.relpath(target.resolve(), recipe_dir.resolve())
    return str(target.resolve()) if rel.startswith("..") else rel


def write_starter(data: str | Path, output: str | Path = "recipe.yaml", task: str | None = None,
                  text_column: str | None = None, label_column: str | None = None, force: bool = False):
    """Inspect `data`, write the recipe and its calibration manifest, load the recipe back with every check.
    Returns (findings, recipe path, manifest path, recipe)."""
    from .calibration import write_manifest
    from .recipe import load_recipe

    output, data = Path(output), Path(data)
    manifest = calibration_path(output)
    existing = [p for p in (output, manifest) if p.exists()]
    if existing and not force:
        raise EdgeftError(f"{' and '.join(map(str, existing))} already exist{'s' if len(existing) == 1 else ''}; "
                          f"pass --force to overwrite, or -o another file")
    f = inspect_data(data, task, text_column, label_column)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_recipe(f, data_ref=_ref(data, output.parent), calibration=manifest.name,
                                    recipe_path=str(output)))
    try:
        head = load_recipe(output, data_only=True)
        write_manifest(head, manifest, "train", CALIBRATION_SAMPLES, seed=0)
        recipe = load_recipe(output)
    except DataError as e:
        _remove(output, manifest)
        raise DataError(f"the data loader does not take {data} as it is: {e}") from None
    except RecipeError as e:
        _remove(output, manifest)
        raise EdgeftError(f"the written recipe does not load (a bug in edgeft init, please report it):\n{e}") from None
    return f, output, manifest, recipe


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def print_summary(f: Findings, output: Path, manifest: Path, recipe, console=None) -> None:
    """What was found (a small table), what was written and the next command."""
    import sys

    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{f.path}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    text = f.task == "text-classification"
    table.add_row("task", f.task)
    if text:
        table.add_row("rows", f"{f.rows:,} with text and label" + "".join(
            f"; {n:,} dropped ({why})" for why, n in f.dropped.items()))
        table.add_row("columns", f"text: {f.text_column}, label: {f.label_column} (of {', '.join(f.columns)})")
    else:
        table.add_row("images", f"{f.rows:,} ({f.layout}" + (": " + ", ".join(
            f"{k} {v:,}" for k, v in f.split_counts.items()) if f.split_counts else "") + ")")
    table.add_row("classes", f"{len(f.class_counts)}: {balance(f.class_counts)}"
                             + (" (in train/)" if f.has_split_dirs else ""))
    table.add_row("majority class", f"{max(f.class_counts.values()) / sum(f.class_counts.values()):.1%} "
                                    f"(the accuracy of always answering it)")
    if text:
        tl = f.token_lengths
        table.add_row("tokens (MiniLM)", f"p50 {tl['p50']}, p95 {tl['p95']}, p99 {tl['p99']}, max {tl['max']} "
                                         f"({f.measured:,} texts)")
        table.add_row("max_length", f"{f.max_length} (cuts {f.truncated:.1%}; model limit {f.position_limit})")
    else:
        table.add_row("image sizes", ", ".join(f"{k} {v}" for k, v in f.image_sizes.items()) +
                      f" ({f.measured:,} images)")
        table.add_row("image_size", str(f.image_size))
    console.print(table)
    for note in f.notes:
        console.print(f"[yellow]note[/]: {note}")
    model = TEXT_MODEL if text else IMAGE_MODEL
    console.print(f"wrote {output} ({model}, {len(recipe.stages)} stages: {', '.join(s.name for s in recipe.stages)})")
    console.print(f"wrote {manifest} (calibration set for the INT8 stages)")
    console.print(f"next: [bold]edgeft run {output}[/]")
