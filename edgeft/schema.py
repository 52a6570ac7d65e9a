"""The ground floor of every config schema: the strict base model, name and @ref patterns, paths
relative to a recipe, and pydantic errors as (key path, reason) pairs.

Imported by the recipe, the stage configs and the calibration manifest alike; it imports nothing of
edgeft's, so no config module can come back round to another through it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"     # recipe and stage names
REF_RE = r"^@[A-Za-z0-9][A-Za-z0-9._-]*$"     # @stage references


class Strict(BaseModel):
    """Unknown keys are errors: a misspelled setting never silently falls back to its default."""
    model_config = ConfigDict(extra="forbid")


def differs_from_default(model: BaseModel, key: str) -> bool:
    """A key set to something other than its default (a dumped and re-loaded recipe lists every key,
    defaults included: those change nothing, so they are not held against a check)."""
    return getattr(model, key) != type(model).model_fields[key].default


def resolve_path(p: str, base_dir: Path) -> Path:
    """Relative paths: the current directory if the file is there, else the recipe's folder."""
    path = Path(p).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return base_dir / path


def _loc_to_path(loc: tuple, stage_types: set[str]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in stage_types and i >= 2 and loc[0] == "stages" and isinstance(loc[i - 1], int):
            continue  # the discriminated union adds the tag to the location; users never wrote it
        elif isinstance(part, str) and "[" in part:  # pydantic function-validator tags
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _format_error(err: dict) -> str:
    t, ctx = err["type"], err.get("ctx", {})
    inp = err.get("input")
    if t == "literal_error":
        expected = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{inp!r} is not one of {expected}"
    if t == "union_tag_invalid":
        expected = ctx.get("expected_tags", "").replace("'", "")
        return f"unknown stage type {ctx.get('tag')!r}; known types: {expected}"
    if t == "union_tag_not_found":
        return "missing `type` (the stage type)"
    if t == "extra_forbidden":
        return "unknown key (misspelled?)"
    if t == "missing":
        return "required key is missing"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def pydantic_problems(exc: ValidationError, stage_types: set[str] = frozenset(),
                      prefix: tuple = ()) -> list[tuple[str, str]]:
    """A ValidationError as (key path, reason) pairs in the user's terms (`stages[2].method`)."""
    out = []
    for e in exc.errors():
        path = _loc_to_path(prefix + tuple(e["loc"]), stage_types)
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path += ".type"
        out.append((path, _format_error(e)))
    return out
