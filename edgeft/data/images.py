"""Image classification data: the built-in Fashion-MNIST set, and users' image folders.

- `builtin:fashion_mnist`: the official 60,000 / 10,000 split from the Debian package
  `dataset-fashion-mnist` (idx files under /usr/share/datasets/fashion-mnist/, or the folder in
  $EDGEFT_FASHION_MNIST_DIR). Validation is carved out of train (`split.validation` of it,
  deterministic from the recipe seed); test is the official test set. Items are 28x28 uint8 arrays.
- an image folder (ImageFolder layout: one sub-folder per class, the folder name is the label):
  `source: DIR` with `train/`, `validation/` (or `val/`) and `test/` inside, or with class folders
  directly inside (split per class by `split` fractions); or `train:`/`test:` folders (and
  `validation:`; without it, `split.validation` of each train class is held out). Items are file
  paths; every file is decoded once when the splits load: empty, unreadable or truncated images are
  listed in one DataError (file names, how many in all), or dropped and counted with
  `data.drop_invalid: true`.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import Split, Splits

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
FASHION_MNIST_HINT = ("needs the Debian package dataset-fashion-mnist: `apt-get update && apt-get install -y "
                      "dataset-fashion-mnist` (as root), or unpack its idx .gz files into a folder and set "
                      "EDGEFT_FASHION_MNIST_DIR to it")
BUILTIN = {"fashion_mnist": "Fashion-MNIST, official 60k/10k split, 10 classes, 28x28 grayscale "
                            "(Debian package dataset-fashion-mnist)"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLIT_DIRS = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST

def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("EDGEFT_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)


def read_idx(images_gz: Path, labels_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, rows, cols] uint8, labels [n] int64) from an idx3/idx1 pair of gzip files."""
    try:
        with gzip.open(images_gz, "rb") as fh:
            raw = fh.read()
        with gzip.open(labels_gz, "rb") as fh:
            lab = fh.read()
    except OSError as e:
        raise DataError(f"cannot read Fashion-MNIST files in {images_gz.parent}: {e}") from None
    if int.from_bytes(raw[:4], "big") != 2051 or int.from_bytes(lab[:4], "big") != 2049:
        raise DataError(f"{images_gz.name} / {labels_gz.name}: not idx3 / idx1 files")
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    labels = np.frombuffer(lab, dtype=np.uint8, offset=8).astype(np.int64)
    if len(labels) != n:
        raise DataError(f"{images_gz.name} has {n} images but {labels_gz.name} {len(labels)} labels")
    return images, labels


def load_fashion_mnist(val_fraction: float, seed: int) -> Splits:
    folder = fashion_mnist_dir()
    missing = [f for pair in FASHION_MNIST_FILES.values() for f in pair if not (folder / f).is_file()]
    if missing:
        raise DataError(f"builtin:fashion_mnist: {', '.join(missing)} not found in {folder}; {FASHION_MNIST_HINT}")
    tr_x, tr_y = read_idx(*(folder / f for f in FASHION_MNIST_FILES["train"]))
    te_x, te_y = read_idx(*(folder / f for f in FASHION_MNIST_FILES["test"]))
    perm = np.random.default_rng(seed).permutation(len(tr_x))
    k = max(1, int(round(val_fraction * len(tr_x))))
    val_idx, train_idx = np.sort(perm[:k]), np.sort(perm[k:])
    return Splits(Split(list(tr_x[train_idx]), tr_y[train_idx]), Split(list(tr_x[val_idx]), tr_y[val_idx]),
                  Split(list(te_x), te_y), list(FASHION_MNIST_CLASSES),
                  {"source": f"builtin:fashion_mnist ({folder}; validation: {k} images carved from train)"})


# ---------------------------------------------------------------------------------------------
# image folders

def class_folders(folder: Path) -> dict[str, list[Path]]:
    """{class name: image files} for the sub-folders of `folder` (sorted; hidden entries skipped)."""
    out = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[d.name] = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                             and not f.name.startswith("."))
    return out


def split_dirs(folder: Path) -> dict[str, Path] | None:
    """train/validation/test sub-folders of `folder`, if it is laid out that way (else None)."""
    found = {}
    for split, names in SPLIT_DIRS.items():
        for n in names:
            if (folder / n).is_dir():
                found[split] = folder / n
                break
    return found if {"train", "test"} <= set(found) else None


def image_problem(path: Path) -> str | None:
    """Why the file cannot be used as an image (empty, not an image, truncated: every file is decoded,
    as `verify()` passes a truncated JPEG), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return "image file is empty"
        with Image.open(path) as im:
            im.draft("RGB", (1, 1))          # JPEG: decode at reduced scale, still reads every byte
            im.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        return f"cannot read image: {e}"
    return None


def _split_of(by_class: dict[str, list[Path]], label_names: list[str], name: str, bad: list) -> Split:
    """The split's images with their class ids; images of a class train does not have go to `bad`."""
    from . import Invalid

    index = {n: i for i, n in enumerate(label_names)}
    items, labels = [], []
    for cls, files in by_class.items():
        if cls not in index:
            bad += [Invalid(str(f), "label not in train", f"class folder {cls!r} does not appear in the training "
                                                          f"split (classes: {', '.join(label_names)})", name)
                    for f in files]
            continue
        items += files
        labels += [index[cls]] * len(files)
    return Split(items, np.asarray(labels, dtype=np.int64))


def _fraction_split(by_class: dict[str, list[Path]], val: float, test: float, seed: int):
    """Per class: a seeded shuffle, `test` and `val` fractions held out (at least one each when the
    class has three or more images)."""
    rng = np.random.default_rng(seed)
    parts = {"train": {}, "validation": {}, "test": {}}
    for name, files in by_class.items():
        perm = [files[i] for i in rng.permutation(len(files))]
        n = len(perm)
        k_test = max(1, int(round(test * n))) if n >= 3 and test > 0 else 0
        k_val = max(1, int(round(val * n))) if n >= 3 and val > 0 else 0
        parts["test"][name] = sorted(perm[:k_test])
        parts["validation"][name] = sorted(perm[k_test:k_test + k_val])
        parts["train"][name] = sorted(perm[k_test + k_val:])
    return parts


def load_image_folders(data, seed: int, base_dir: Path) -> Splits:
    from ..schema import resolve_path
    from . import Invalid, dropped_counts, invalid_error

    if data.source:
        root = resolve_path(data.source, base_dir)
        if not root.is_dir():
            raise DataError(f"image folder not found: {root}")
        dirs = split_dirs(root)
        if dirs is None:
            by_class = class_folders(root)
            _non_empty(by_class, root)
            parts = _fraction_split(by_class, data.split.validation, data.split.test, seed)
            info = f"{root} (split per class: validation {data.split.validation:g}, test {data.split.test:g})"
        else:
            parts = {k: class_folders(v) for k, v in dirs.items()}
            info = f"{root} ({', '.join(f'{k}/' for k in dirs)})"
    else:
        parts = {}
        for name in ("train", "validation", "test"):
            if getattr(data, name):
                folder = resolve_path(getattr(data, name), base_dir)
                if not folder.is_dir():
                    raise DataError(f"data.{name}: image folder not found: {folder}")
                parts[name] = class_folders(folder)
        root = resolve_path(data.train, base_dir)
        info = {n: getattr(data, n) for n in ("train", "validation", "test") if getattr(data, n)}
    _non_empty(parts["train"], root)
    # every image is decoded once: the ones that do not decode are listed (or dropped) before any split
    bad = []
    for name, by_class in parts.items():
        for cls, files in by_class.items():
            ok = []
            for f in files:
                reason = image_problem(f)
                if reason:
                    bad.append(Invalid(str(f), "unreadable image", reason, name))
                else:
                    ok.append(f)
            by_class[cls] = ok
    how = "as given in the folders"
    if "validation" not in parts:        # carve validation out of train, per class
        carved = _fraction_split(parts["train"], data.split.validation, 0.0, seed)
        parts["train"], parts["validation"] = carved["train"], carved["validation"]
        how = f"validation carved out of train: {data.split.validation:g} of each class, seed {seed}"
    elif data.source and dirs is None:
        how = f"per class, seed {seed}: validation {data.split.validation:g}, test {data.split.test:g}"
    label_names = [n for n, files in parts["train"].items() if files]
    if len(label_names) < 2:
        if bad and not data.drop_invalid:
            raise invalid_error(bad)
        raise DataError(f"{root}: need at least two class folders with images; found {label_names}")
    splits = {name: _split_of({k: v for k, v in parts[name].items() if v}, label_names, name, bad)
              for name in ("train", "validation", "test")}
    if bad and not data.drop_invalid:
        raise invalid_error(bad)
    for name, s in splits.items():
        if len(s) == 0:
            raise DataError(f"{root}: the {name} split has no images")
    out = {"source": info, "split": how}
    if bad:
        out["dropped"] = dropped_counts(bad)
    return Splits(splits["train"], splits["validation"], splits["test"], label_names, out)


def _non_empty(by_class: dict, root: Path) -> None:
    if not by_class:
        raise DataError(f"{root}: no class folders (expected one sub-folder of images per class)")
    if not any(by_class.values()):
        raise DataError(f"{root}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")


# ---------------------------------------------------------------------------------------------

def load_image_splits(data, seed: int, base_dir: Path) -> Splits:
    """Splits for a recipe's `data` section of an image task; max_samples caps each split."""
    from .text import _cap

    if data.source == "builtin:fashion_mnist":
        splits = load_fashion_mnist(data.split.validation, seed)
    elif data.source and data.source.startswith("builtin:"):
        raise DataError(f"unknown builtin image dataset {data.source!r}; known: "
                        f"{', '.join('builtin:' + k for k in BUILTIN)}")
    else:
        splits = load_image_folders(data, seed, base_dir)
    for name in ("train", "validation", "test"):
        setattr(splits, name, _cap(splits.get(name), data.max_samples.get(name), seed))
    return splits


def check_image_data(data, base_dir: Path) -> list[tuple[str, str]]:
    """Load-time checks: the built-in set is installed, folders exist and hold class folders."""
    from ..schema import resolve_path

    problems = []
    if data.source and data.source.startswith("builtin:"):
        name = data.source.split(":", 1)[1]
        if name not in BUILTIN:
            problems.append(("data.source", f"unknown builtin image dataset {name!r}; known: "
                                            f"{', '.join('builtin:' + k for k in BUILTIN)}"))
        else:
            folder = fashion_mnist_dir()
            if not all((folder / f).is_file() for pair in FASHION_MNIST_FILES.values() for f in pair):
                problems.append(("data.source", f"builtin:fashion_mnist is not installed in {folder}: "
                                                f"{FASHION_MNIST_HINT}"))
        return problems
    for key in (["source"] if data.source else [k for k in ("train", "validation", "test") if getattr(data, k)]):
        folder = resolve_path(getattr(data, key), base_dir)
        if not folder.is_dir():
            problems.append((f"data.{key}", f"image folder not found: {folder}"))
        elif not any(p.is_dir() for p in folder.iterdir()):
            problems.append((f"data.{key}", f"{folder} has no sub-folders (one folder of images per class, "
                                            f"or train/validation/test folders)"))
    return problems
