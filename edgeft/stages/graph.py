"""Whole-recipe checks over the parsed stages: unique names, @refs that point back to a stage of an
accepted kind, each stage's own cross-checks and warnings, and the default `input` of a stage.

Stages are given as a list in recipe order with None where a stage failed to parse (its own error is
reported already); nothing here imports a stage module.
"""

from __future__ import annotations

# what to do with an artifact kind that few stages take
KIND_HINTS = {"encoder": " (an adapted encoder has no task head: fine-tune it first, with a finetune stage "
                         "whose input is {ref}, and use that stage's output here)"}


MODEL_REF = "@model"     # `input: "@model"`: the recipe's model, also for a stage that is not the first


def input_ref(stages, index: int) -> str | None:
    """The @ref a stage works on (its `input`, else the default); None means the recipe's model."""
    s = stages[index]
    ref = s.input or default_input(stages, index)
    return None if ref == MODEL_REF else ref


def default_input(stages, index: int) -> str | None:
    """The previous stage that produced a model (not a report); None means the recipe's model."""
    for prev in reversed(stages[:index]):
        if prev is not None and prev.produces() != "report":
            return "@" + prev.name
    return None


def input_stage(stages, stage):
    """The parsed stage whose artifact `stage` takes as `input` (explicit or default), or None."""
    idx = next((i for i, s in enumerate(stages) if s is stage), None)
    ref = input_ref(stages, idx) if idx is not None else (None if stage.input == MODEL_REF else stage.input)
    return next((s for s in stages if s is not None and ref and s.name == ref[1:]), None)


def check_stages(stages, recipe, unparsed: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """Whole-recipe checks: unique names, @refs to earlier stages of an accepted kind, stage checks."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(stages):
        if s is None:
            continue
        if "@" + s.name == MODEL_REF:
            problems.append((f"stages[{i}].name", f"{s.name!r} is reserved: `input: \"{MODEL_REF}\"` means the "
                                                  f"recipe's model"))
        if s.name in seen:
            problems.append((f"stages[{i}].name", f"duplicate stage name {s.name!r} (also stages[{seen[s.name]}])"))
        else:
            seen[s.name] = i
    names_all = {s.name: i for i, s in enumerate(stages) if s is not None}

    def check_ref(i: int, path: str, ref: str, accepted: tuple[str, ...]):
        name = ref[1:]
        j = names_all.get(name)
        if j is None and name in (unparsed or {}):
            return  # that stage has its own error already
        if j is None:
            problems.append((path, f"{ref} does not name a stage of this recipe"))
        elif j >= i:
            problems.append((path, f"{ref} refers to a stage that runs later (stages[{j}]); refs must point back"))
        else:
            kind = stages[j].produces()
            if kind not in accepted:
                problems.append((path, f"{ref} produces a {kind!r} artifact; this accepts {', '.join(accepted)}"
                                       + KIND_HINTS.get(kind, "").format(ref=ref)))

    for i, s in enumerate(stages):
        if s is None:
            continue
        ref = input_ref(stages, i)
        if not s.accepts and s.input:
            problems.append((f"stages[{i}].input", f"a {s.type} stage takes no `input`"))
        if s.accepts:
            if ref is None:
                if "torch" not in s.accepts:
                    problems.append((f"stages[{i}].input", f"a {s.type} stage needs an input of kind "
                                     f"{', '.join(s.accepts)}; the recipe's model is a torch model"))
            else:
                check_ref(i, f"stages[{i}].input", ref, s.accepts)
        for path, r, accepted in s.refs():
            check_ref(i, f"stages[{i}].{path}", r, accepted)
        for path, reason in s.check(recipe, stages):
            problems.append((f"stages[{i}].{path}" if path else f"stages[{i}]", reason))
    return problems


def stage_warnings(stages, recipe) -> list[tuple[str, str]]:
    """Every parsed stage's warnings, with full key paths."""
    out = []
    for i, s in enumerate(stages):
        if s is not None:
            out += [(f"stages[{i}].{p}" if p else f"stages[{i}]", r) for p, r in s.warnings(recipe, stages)]
    return out


def recipe_targets(stages) -> set[str]:
    """The name of every target some benchmark stage of the recipe measures on (SSH devices by name)."""
    return {getattr(t, "name", t) for s in stages if s is not None for t in getattr(s, "targets", None) or ()}
