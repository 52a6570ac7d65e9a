"""Calibration set manifests (calibration/*.yaml): which samples, how many, and their hash.

A manifest pins a calibration set so a quantization is reproducible: the samples are drawn from
`split` of the recipe's data with `seed`, and `sha256` is the hash of the chosen samples' content;
if the data changed, the hash no longer matches and the quantize stage fails instead of silently
calibrating on other samples. `edgeft calibration RECIPE -n 256 -o calibration/x.yaml` writes one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, PositiveInt, ValidationError

from .schema import Strict


class CalibrationManifest(Strict):
    source: str = Field(description="the data source it was drawn from, e.g. builtin:rotten_tomatoes")
    split: Literal["train", "validation", "test"] = "train"
    num_samples: PositiveInt
    seed: int = Field(0, ge=0, le=2**32 - 1, description="0..2**32-1, the range numpy's seeding accepts")
    sha256: str | None = Field(None, description="hash of the chosen samples; checked when used")


def read_manifest(path: Path) -> tuple[CalibrationManifest | None, list[tuple[str, str]]]:
    """(manifest, problems); problems use key paths inside the manifest."""
    if not path.is_file():
        return None, [("", f"calibration manifest not found: {path}")]
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return None, [("", f"calibration manifest {path} is not valid YAML: {e}")]
    if not isinstance(raw, dict):
        return None, [("", f"calibration manifest {path} must be a mapping")]
    try:
        return CalibrationManifest.model_validate(raw), []
    except ValidationError as e:
        from .schema import pydantic_problems

        return None, [(p, r) for p, r in pydantic_problems(e, set())]


def choose_indices(n_available: int, num_samples: int, seed: int) -> list[int]:
    import numpy as np

    rng = np.random.default_rng(seed)
    k = min(num_samples, n_available)
    return sorted(rng.choice(n_available, size=k, replace=False).tolist())


def samples_hash(samples: list) -> str:
    """sha256 over the samples' content: texts by their repr, image arrays by shape, dtype and pixels,
    image files (paths) by their bytes."""
    import numpy as np

    h = hashlib.sha256()
    for s in samples:
        if isinstance(s, np.ndarray):
            h.update(f"ndarray{s.shape}{s.dtype}".encode())
            h.update(np.ascontiguousarray(s).tobytes())
        elif isinstance(s, Path):
            h.update(b"file:")
            h.update(hashlib.sha256(s.read_bytes()).digest())
        else:
            h.update(repr(s).encode())
        h.update(b"\0")
    return h.hexdigest()


def data_source_id(data_cfg) -> str:
    """How a manifest names the recipe's data: builtin:NAME or the file path(s)."""
    if data_cfg.source:
        return data_cfg.source
    return f"files:{data_cfg.train}"


def manifest_problems(recipe, path: str) -> list[tuple[str, str]]:
    """Load-time problems of a stage's `calibration` manifest: unreadable or invalid keys, or drawn from
    other data than the recipe's."""
    manifest, errs = read_manifest(recipe.resolve_path(path))
    problems = [(f"calibration{'.' + p if p else ''}", r) for p, r in errs]
    if manifest and manifest.source != data_source_id(recipe.data):
        problems.append(("calibration", f"manifest was drawn from {manifest.source!r}, "
                                        f"but the recipe's data is {data_source_id(recipe.data)!r}"))
    return problems


def calibration_samples(manifest: CalibrationManifest, splits, manifest_path: Path | None = None) -> list:
    """The manifest's samples from the recipe's splits; fails if their hash no longer matches."""
    from .errors import DataError

    split = splits.get(manifest.split)
    idx = choose_indices(len(split), manifest.num_samples, manifest.seed)
    items = [split.items[i] for i in idx]
    digest = samples_hash(items)
    if manifest.sha256 and manifest.sha256 != digest:
        raise DataError(f"calibration manifest {manifest_path or ''}: the chosen samples' hash is {digest[:12]}…, "
                        f"the manifest says {manifest.sha256[:12]}…; the data changed. Regenerate it with "
                        f"`edgeft calibration` if that is intended.")
    return items


def check_request(split: str, num_samples: int, seed: int) -> list[tuple[str, str]]:
    """Problems with a manifest request (`edgeft calibration` options), before any data is loaded."""
    try:
        CalibrationManifest(source="-", split=split, num_samples=num_samples, seed=seed)
    except ValidationError as e:
        from .schema import pydantic_problems

        return pydantic_problems(e)
    return []


def write_manifest(recipe, output: str | Path, split: str, num_samples: int, seed: int) -> Path:
    """Draw the samples, hash them and write the manifest (atomically: a temp file renamed into place).
    RecipeError naming the option (num_samples, seed, split) if the request is invalid."""
    import os

    from .errors import RecipeError
    from .tasks import get_task

    problems = check_request(split, num_samples, seed)
    if problems:
        raise RecipeError(problems, source="calibration manifest")
    splits = get_task(recipe.task).load_splits(recipe)
    m = CalibrationManifest(source=data_source_id(recipe.data), split=split, num_samples=num_samples, seed=seed)
    items = calibration_samples(m, splits)
    m.sha256 = samples_hash(items)
    m.num_samples = len(items)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Calibration set: {m.num_samples} samples of the {split} split of {m.source}, "
              f"drawn with seed {seed}.\n"
              f"# sha256 is the hash of the chosen samples; quantize fails if the data no longer matches it.\n")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(header + yaml.safe_dump(m.model_dump(), sort_keys=False))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def calibration_set(manifest_path: str, ctx) -> tuple[dict, list]:
    """(facts for meta, samples) of the pinned calibration manifest `manifest_path` (relative to the
    recipe) over the run's splits; DataError if it no longer matches the data."""
    from .errors import DataError
    from .store import hash_file

    path = ctx.recipe.resolve_path(manifest_path)
    manifest, problems = read_manifest(path)
    if manifest is None:
        raise DataError("; ".join(f"{p}: {r}" if p else r for p, r in problems))
    samples = calibration_samples(manifest, ctx.splits(), path)     # DataError if the hash no longer matches
    return ({"manifest": str(path), "file_sha256": hash_file(path),
             "sha256": manifest.sha256 or samples_hash(samples), "split": manifest.split, "seed": manifest.seed,
             "num_samples": len(samples)}, samples)
