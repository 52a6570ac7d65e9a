"""The recipe: one YAML file that says what model, what data, and which stages to run.

`load_recipe` validates everything that can be checked before work starts and raises one
`RecipeError` listing every problem with its key path (`stages[2].method: ...`).
Heavy libraries are never imported here, so `edgeft validate` is instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator

from . import stages as registry
from .errors import RecipeError
from .schema import NAME_RE, Strict, differs_from_default, pydantic_problems, resolve_path
from .stages.graph import check_stages, stage_warnings

log = logging.getLogger("edgeft")

TASKS = ("text-classification", "image-classification")
# data keys that only one task reads: setting one for the other task is an error, not silently ignored
TEXT_DATA_KEYS = ("max_length", "text_column", "label_column", "group_column")
IMAGE_DATA_KEYS = ("image_size",)
# what users' text files are read with (see DataConfig.key_fields): change it when the same file would give
# other splits, rows or label ids
USER_TEXT_LOADER = "edgeft.data.text/2: strict rows, labels as given, stratified splits"
SEED_MAX = 2**32 - 1      # numpy's legacy seeding (np.random.seed), scikit-learn random_state, transformers set_seed


class ModelConfig(Strict):
    source: str = Field(description="shipped:NAME, a Hugging Face hub id, or a local model folder")


class SplitFractions(Strict):
    """How a single `source` is split (stratified by label, or by `group_column`); with `train` and `test`
    files but no `validation`, `validation` is the share of train held out."""
    validation: float = Field(0.1, gt=0, lt=1, description="of the whole (single source) or of train (files)")
    test: float = Field(0.2, gt=0, lt=1, description="of the whole; single source only")

    @model_validator(mode="after")
    def _sum(self):
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave something to train on (sum < 1)")
        return self


class DataConfig(Strict):
    source: str | None = Field(None, description="builtin:NAME, or one CSV/JSONL file split by `split`")
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    split: SplitFractions = SplitFractions()
    group_column: str | None = Field(None, description="rows sharing a value stay in one split")
    text_column: str = "text"
    label_column: str = "label"
    max_length: PositiveInt = 128
    image_size: int | None = Field(None, ge=16, le=1024, description="image tasks: images are resized to "
                                   "image_size x image_size (default 224)")
    max_samples: dict[Literal["train", "validation", "test"], PositiveInt] = {}
    drop_invalid: bool = Field(False, description="drop rows with an empty text, a missing label, a label train "
                               "never has or an image that does not decode (counted in the report) instead of "
                               "failing with a list of them")

    @model_validator(mode="after")
    def _one_way(self):
        files = [self.train, self.validation, self.test]
        if self.source and any(files):
            raise ValueError("give either `source` or `train`/`validation`/`test` files, not both")
        if not self.source and not (self.train and self.test):
            given = [k for k in ("train", "validation", "test") if getattr(self, k)]
            raise ValueError(f"{' and '.join(f'`{k}`' for k in given) or 'no data'} given: give `source` (one file "
                             f"or builtin:NAME), or `train` and `test` files (`validation` is optional: without it "
                             f"`split.validation` of train is held out)")
        return self

    def unused_problems(self) -> list[tuple[str, str]]:
        """Split settings the given files leave nothing to do for: errors, never silently ignored."""
        if self.source:
            return []
        out = []
        if differs_from_default(self.split, "test"):
            out.append(("data.split.test", "the `test` file is the test split; split.test applies to a single "
                                           "`source` only"))
        if self.validation and differs_from_default(self.split, "validation"):
            out.append(("data.split.validation", "the `validation` file is the validation split; split.validation "
                                                 "applies when validation is carved out of train"))
        if self.validation and self.group_column:
            out.append(("data.group_column", "all three files are given, so nothing is split by group"))
        return out

    def key_fields(self, task: str) -> dict:
        """This section as it enters every cache key. Keys at their default that change no data are left
        out (so adding them kept existing keys): image_size; drop_invalid always (a load either succeeds
        with no invalid rows, the same data either way, or drops them, which the old loader did
        silently). Users' text files are read by the loader of edgeft.data.text (strict rows, labels as
        given, stratified single-file splits): `loader` names it, so artifacts made from the same file by
        the earlier loader (another split, other label ids) are never reused."""
        data = self.model_dump(exclude={"drop_invalid"} | ({"image_size"} if self.image_size is None else set()))
        if task == "text-classification" and not (self.source or "").startswith("builtin:"):
            data["loader"] = USER_TEXT_LOADER
        return data


class RecipeHead(Strict):
    """Everything of a recipe but its parsed stages: what the whole-recipe checks read while some stages
    may still have failed to parse (`stages` here is the raw list)."""
    name: str = Field(pattern=NAME_RE)
    seed: int = Field(0, description=f"0..{SEED_MAX}: splits, sampling, initialisation and training order")
    strict: bool = Field(False, description="treat validation warnings (e.g. pruning no target speeds up) as errors")
    task: Literal[TASKS]  # type: ignore[valid-type]
    model: ModelConfig
    data: DataConfig
    stages: list[Any] = Field(min_length=1)
    # set by load_recipe, not by the user
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v: int) -> int:
        if not 0 <= v <= SEED_MAX:
            raise ValueError(f"{v} is out of range: a seed is 0..{SEED_MAX} (2**32 - 1), what numpy, "
                             f"scikit-learn and torch all accept")
        return v

    def resolve_path(self, p: str) -> Path:
        return resolve_path(p, self.base_dir)

    def context_fields(self) -> dict:
        """The recipe-level settings every stage's output depends on (part of every cache key)."""
        return {"task": self.task, "seed": self.seed, "model": self.model.model_dump(),
                "data": self.data.key_fields(self.task)}

    def task_problems(self) -> list[tuple[str, str]]:
        """Settings of the other task: rejected, so nothing a user wrote is silently ignored."""
        is_image = self.task == "image-classification"
        other = TEXT_DATA_KEYS if is_image else IMAGE_DATA_KEYS
        problems = [(f"data.{k}", f"{'a text' if is_image else 'an image'}-classification setting; this recipe's "
                                  f"task is {self.task}") for k in other if differs_from_default(self.data, k)]
        problems += self.data.unused_problems()
        if is_image and self.data.source == "builtin:fashion_mnist" and differs_from_default(self.data.split, "test"):
            problems.append(("data.split.test", "builtin:fashion_mnist uses its official test set; only "
                                                "split.validation (a fraction of train) applies"))
        return problems


class Recipe(RecipeHead):
    """A validated recipe: every stage parsed into its config class."""
    stages: list[registry.StageConfigUnion] = Field(min_length=1)

    def stage(self, name: str) -> registry.StageConfigUnion:
        return next(s for s in self.stages if s.name == name)

    def dump(self) -> dict:
        """The recipe as plain JSON-able data (every key, defaults included): what run.json and the
        report record, and what `validate_recipe` reads back."""
        return self.model_dump(mode="json", exclude={"base_dir"})


# ---------------------------------------------------------------------------------------------
# overrides

def apply_override(raw: dict, expr: str) -> None:
    """`stages.finetune.epochs=1` or `data.max_length=32`; a stage is picked by name or index."""
    if "=" not in expr:
        raise RecipeError([("-o " + expr, "override must look like key.path=value")])
    key, value = expr.split("=", 1)
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _pick_stage(node, part, key)
        else:
            if not isinstance(node, dict):
                raise RecipeError([(key, f"cannot descend into {'.'.join(parts[:i])}")])
            node = node.setdefault(part, {})
    last = parts[-1]
    parsed = yaml.safe_load(value) if value != "" else ""
    if isinstance(node, list):
        raise RecipeError([(key, "an override must name a key, not a whole stage")])
    node[last] = parsed


def _pick_stage(stages: list, part: str, key: str):
    if part.isdigit() and int(part) < len(stages):
        return stages[int(part)]
    for s in stages:
        if isinstance(s, dict) and s.get("name") == part:
            return s
    raise RecipeError([(key, f"no stage named {part!r}")])


# ---------------------------------------------------------------------------------------------

def load_recipe(path: str | Path, overrides: list[str] | None = None, check_data: bool = True,
                data_only: bool = False) -> Recipe:
    """Parse, validate and cross-check a recipe. Raises RecipeError listing every problem.

    `data_only` checks the task, model and data sections but not the stages (used to write a
    calibration manifest that the recipe's stages will only be able to reference afterwards).
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError([("", f"recipe file not found: {path}")], source=str(path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError([("", f"not valid YAML: {e}")], source=str(path)) from None
    if not isinstance(raw, dict):
        raise RecipeError([("", "a recipe is a mapping with name, task, model, data and stages")], source=str(path))
    for o in overrides or []:
        apply_override(raw, o)
    if data_only:
        raw = {**raw, "stages": [{"name": "finetune", "type": "finetune"}]}
    return validate_recipe(raw, base_dir=path.resolve().parent, source=str(path), check_data=check_data)


def validate_recipe(raw: dict, base_dir: Path = Path("."), source: str = "recipe", check_data: bool = True) -> Recipe:
    types = set(registry.CONFIGS)
    problems: list[tuple[str, str]] = []
    raw = dict(raw)
    raw_stages = raw.get("stages")
    recipe = None
    try:
        recipe = RecipeHead.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as e:
        problems += pydantic_problems(e, types)
    parsed_stages = []
    if isinstance(raw_stages, list):
        for i, s in enumerate(raw_stages):
            try:
                parsed_stages.append(registry.parse_stage(s))
            except ValidationError as e:
                problems += pydantic_problems(e, types, prefix=("stages", i))
                parsed_stages.append(None)
    if recipe is not None:
        # cross-checks run even when some stages failed to parse: the user sees every problem at once
        problems += recipe.task_problems()
        problems += check_stages(parsed_stages, recipe, _unparsed_names(raw_stages, parsed_stages))
        warnings = stage_warnings(parsed_stages, recipe)
        if recipe.strict:
            problems += [(path, f"{reason} (an error because the recipe has `strict: true`)")
                         for path, reason in warnings]
        else:
            for path, reason in warnings:
                log.warning("%s: %s: %s", source, path, reason)
        if check_data:
            from .tasks import get_task
            problems += get_task(recipe.task).check_data(recipe)
    if problems or recipe is None:
        raise RecipeError(problems, source=source)
    # every part is valid: the typed recipe holds the parsed stage objects the checks saw
    return Recipe.model_validate({**{k: getattr(recipe, k) for k in RecipeHead.model_fields}, "stages": parsed_stages})


def _unparsed_names(raw_stages, parsed) -> dict[str, int]:
    """Names of stages that failed to parse: refs to them are not reported a second time."""
    out = {}
    for i, (r, p) in enumerate(zip(raw_stages, parsed)):
        if p is None and isinstance(r, dict) and isinstance(r.get("name"), str):
            out[r["name"]] = i
    return out
