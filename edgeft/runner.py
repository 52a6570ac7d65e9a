"""run_recipe: walk the stages, resolve @refs, skip cache hits, commit each output atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import stages as registry
from .artifact import Artifact
from .context import Context
from .recipe import Recipe, dump_recipe
from .store import Store, cache_key, hash_file

log = logging.getLogger("edgeft")


@dataclass
class StagePlan:
    name: str
    type: str
    key: str
    inputs: dict                      # config field -> @ref name(s), or None for the recipe model
    cached: bool = False


@dataclass
class RunResult:
    run_dir: Path
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _input_refs(stages, i: int) -> dict:
    """config field -> stage name (or list of names); 'input' -> None means the recipe's model."""
    s = stages[i]
    refs: dict = {}
    if s.accepts:
        ref = s.input or registry.default_input(stages, i)
        refs["input"] = ref[1:] if ref else None
    for path, ref, _ in s.refs():
        field_name = path.split("[")[0]
        if "[" in path:
            refs.setdefault(field_name, []).append(ref[1:])
        else:
            refs[field_name] = ref[1:]
    return refs


def plan(recipe: Recipe) -> list[StagePlan]:
    """Cache keys for every stage. Keys chain: a change upstream changes every key downstream."""
    from .targets.fingerprint import host_fingerprint

    keys: dict[str, str] = {}
    plans = []
    context = recipe.context_fields()
    for i, s in enumerate(recipe.stages):
        refs = _input_refs(recipe.stages, i)
        input_keys = []
        for v in refs.values():
            for name in (v if isinstance(v, list) else [v]):
                input_keys.append(keys[name] if name else "model:" + recipe.model.source)
        files = {k: hash_file(p) for k, p in s.files(recipe).items()}
        ctx_fields = dict(context)
        if getattr(s, "machine_dependent", False):
            ctx_fields["host"] = host_fingerprint(stable=True)
        key = cache_key(s.type, s.version, s.key_config(), input_keys, files, ctx_fields)
        keys[s.name] = key
        plans.append(StagePlan(s.name, s.type, key, refs))
    return plans


def run_recipe(recipe: Recipe, runs_dir: str | Path = "runs", store_dir: str | Path | None = None,
               force: list[str] | tuple = ()) -> RunResult:
    runs_dir = Path(runs_dir)
    run_dir = runs_dir / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(store_dir or runs_dir / ".store")
    for p in store.clean_stale():
        log.info("removed an unfinished stage folder left by an interrupted run: %s", p.name)
    (run_dir / "recipe.resolved.json").write_text(json.dumps(dump_recipe(recipe), indent=2))

    unknown = [f for f in force if f not in {s.name for s in recipe.stages}]
    if unknown:
        from .errors import RecipeError
        raise RecipeError([("--force", f"no stage named {u!r}") for u in unknown])
    plans = plan(recipe)
    forced = _with_dependents(plans, set(force))
    result = RunResult(run_dir)
    shared: dict = {}
    for s, p in zip(recipe.stages, plans):
        art = None if p.name in forced else store.get(p.key)
        inputs = {f: ([result.artifacts[n] for n in v] if isinstance(v, list) else
                      (result.artifacts[v] if v else None)) for f, v in p.inputs.items()}
        if art is not None:
            # the store is shared by recipes: show this recipe's stage name, not the first producer's
            art = dataclasses.replace(art, stage=p.name)
            log.info("[bold]%s[/] (%s): done before, reusing %s", p.name, p.type, p.key, extra={"markup": True})
            result.skipped.append(p.name)
        else:
            log.info("[bold]%s[/] (%s): running → %s", p.name, p.type, p.key, extra={"markup": True})
            parents = [a.key for v in inputs.values() for a in (v if isinstance(v, list) else [v]) if a is not None]
            tmp = store.begin(p.key)
            ctx = Context(recipe, run_dir, tmp, p.key, p.name, p.type, parents, shared)
            t0 = time.perf_counter()
            try:
                art = registry.run_function(p.type)(s, inputs, ctx)
                art.meta.setdefault("wall_s", round(time.perf_counter() - t0, 1))
                art = store.commit(tmp, art)
            except BaseException:
                store.abort(tmp)     # nothing half-written stays behind, Ctrl-C included
                raise
            log.info("[bold]%s[/]: finished in %.1f s", p.name, time.perf_counter() - t0, extra={"markup": True})
            result.ran.append(p.name)
        result.artifacts[p.name] = art
        if art.kind == "report":
            from .report import write_report
            paths = write_report(art.main_path, run_dir)
            log.info("report: %s", ", ".join(str(x) for x in paths))
    (run_dir / "stages.json").write_text(json.dumps(
        {n: {"key": a.key, "kind": a.kind, "path": str(a.main_path)} for n, a in result.artifacts.items()}, indent=2))
    return result


def _with_dependents(plans: list[StagePlan], names: set[str]) -> set[str]:
    out = set(names)
    for p in plans:
        for v in p.inputs.values():
            if any(n in out for n in (v if isinstance(v, list) else [v]) if n):
                out.add(p.name)
    return out
