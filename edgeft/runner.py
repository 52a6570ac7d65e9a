"""run_recipe: walk the stages, resolve @refs, skip cache hits, commit each output atomically.

A stage that fails (a parity gate, `max_drop` not met, a runtime error) fails its branch, not the
run: the stages that do not depend on it still run, a benchmark measures the artifacts that exist,
the report lists the failure, and `run_recipe` returns with `failed` set (the CLI exits 1).
`fail_fast=True` re-raises the first failure instead. A benchmark whose SSH device failed commits the
rows it has (meta `incomplete`): the stage counts as failed, the report stays, a re-run measures again.
The run's state lives in one file,
runs/<name>/run.json, rewritten atomically after every stage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import stages as registry
from .artifact import Artifact
from .context import Context
from .recipe import Recipe
from .run_state import RunState
from .stages.graph import input_ref
from .store import FileHashes, Store, cache_key, canonical_json

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
    failed: dict[str, dict] = field(default_factory=dict)     # stage -> {error, error_type, figures}
    blocked: dict[str, list[str]] = field(default_factory=dict)   # stage -> the failed stages it needed

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def _input_refs(stages, i: int) -> dict:
    """config field -> stage name (or list of names); 'input' -> None means the recipe's model."""
    s = stages[i]
    refs: dict = {}
    if s.accepts:
        ref = input_ref(stages, i)
        refs["input"] = ref[1:] if ref else None
    for path, ref, _ in s.refs():
        field_name = path.split("[")[0]
        if "[" in path:
            refs.setdefault(field_name, []).append(ref[1:])
        else:
            refs[field_name] = ref[1:]
    return refs


def key_context(recipe: Recipe, hashes: FileHashes) -> dict:
    """recipe.context_fields() with every local file or folder the recipe reads (data files, a dataset
    or image folder, a builtin set's installed file, a local or shipped model) replaced by its content
    hash: an edited file changes the keys, a copy in another folder does not. Hub ids stay strings."""
    from .data import files_read
    from .models import source_files

    ctx = recipe.context_fields()
    for k, paths in files_read(recipe.data, recipe.base_dir).items():
        value = ctx["data"][k]
        if value.startswith("builtin:"):
            ctx["data"][k] = {"builtin": value, "sha256": {p.name: hashes.path(p) for p in paths}}
        else:
            ctx["data"][k] = _content(paths[0], hashes)
    path, packages = source_files(recipe.model.source)
    if path is not None:
        src = recipe.model.source
        ctx["model"]["source"] = {**_content(path, hashes), **({"shipped": src, "packages": packages}
                                                              if src.startswith("shipped:") else {})}
    return ctx


def _content(path: Path, hashes: FileHashes) -> dict:
    if path.is_dir():
        return {"tree_sha256": hashes.tree(path)}
    return {"sha256": hashes.file(path), "suffix": path.suffix.lower()}   # the suffix picks the reader


def _stage_key(recipe: Recipe, s, refs: dict, keys: dict, context: dict, hashes: FileHashes | None = None) -> str:
    """`context`: key_context(recipe, hashes)."""
    from .targets.fingerprint import host_fingerprint

    hashes = hashes or FileHashes()
    model = context["model"]["source"]
    model_ref = "model:" + (model if isinstance(model, str) else canonical_json(model))
    input_keys = []
    for v in refs.values():
        for name in (v if isinstance(v, list) else [v]):
            input_keys.append(keys[name] if name else model_ref)
    files = {k: hashes.path(p) for k, p in s.files(recipe).items()}
    config = s.key_config()
    for k in files:                     # the path as written: its content is in `files`
        config.pop(k, None)
    ctx_fields = dict(context)
    if getattr(s, "machine_dependent", False):
        ctx_fields["host"] = host_fingerprint(stable=True)
    extra = s.key_context() if hasattr(s, "key_context") else {}
    if extra:                           # e.g. a TensorRT engine: the GPU and versions it is built for
        ctx_fields.update(extra)
    return cache_key(s.type, s.version, config, input_keys, files, ctx_fields)


def plan(recipe: Recipe, store: Store | None = None) -> list[StagePlan]:
    """Cache keys for every stage. Keys chain: a change upstream changes every key downstream.
    With a `store`, file hashes are memoised in its .hashes.json."""
    return _plan(recipe, store.hashes if store is not None else FileHashes())[0]


def _plan(recipe: Recipe, hashes: FileHashes) -> tuple[list[StagePlan], dict]:
    """(plans, the key context they were keyed with)."""
    keys: dict[str, str] = {}
    plans = []
    context = key_context(recipe, hashes)
    for i, s in enumerate(recipe.stages):
        refs = _input_refs(recipe.stages, i)
        keys[s.name] = _stage_key(recipe, s, refs, keys, context, hashes)
        plans.append(StagePlan(s.name, s.type, keys[s.name], refs))
    hashes.save()
    return plans, context


def run_recipe(recipe: Recipe, runs_dir: str | Path = "runs", store_dir: str | Path | None = None,
               force: list[str] | tuple = (), fail_fast: bool = False) -> RunResult:
    runs_dir = Path(runs_dir)
    run_dir = runs_dir / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(store_dir or runs_dir / ".store")
    for p in store.clean_stale():
        log.info("removed an unfinished stage folder left by an interrupted run: %s", p.name)

    unknown = [f for f in force if f not in {s.name for s in recipe.stages}]
    if unknown:
        from .errors import RecipeError
        raise RecipeError([("--force", f"no stage named {u!r}") for u in unknown])
    plans, context = _plan(recipe, store.hashes)
    forced = _with_dependents(plans, set(force))
    state = RunState(run_dir, recipe, plans)
    result = RunResult(run_dir)
    shared: dict = {"failures": result.failed, "blocked": result.blocked}
    keys = {p.name: p.key for p in plans}
    try:
        for s, p in zip(recipe.stages, plans):
            down = set(result.failed) | set(result.blocked)
            refs = _drop_failed(p.inputs, down)
            if refs is None:
                needs = sorted({n for v in p.inputs.values() for n in (v if isinstance(v, list) else [v])
                                if n in down})
                result.blocked[p.name] = needs
                state.stage(p.name, status="blocked", blocked_by=needs)
                log.warning("[bold]%s[/] (%s): not run, it needs %s, which failed", p.name, p.type,
                            ", ".join("@" + n for n in needs), extra={"markup": True})
                continue
            key = p.key
            if refs != p.inputs:        # a benchmark without the failed artifacts: its own key
                key = keys[p.name] = _stage_key(recipe, s, refs, keys, context, store.hashes)
                left_out = sorted(set(_names(p.inputs)) - set(_names(refs)))
                log.warning("[bold]%s[/]: measuring without %s (failed)", p.name,
                            ", ".join("@" + n for n in left_out), extra={"markup": True})
                state.stage(p.name, key=key, left_out=left_out)
            inputs = {f: ([result.artifacts[n] for n in v] if isinstance(v, list) else
                          (result.artifacts[v] if v else None)) for f, v in refs.items()}
            with store.lock(key):           # a concurrent run on the same key waits here, then reuses
                art = None if p.name in forced else store.get(key, stage=p.name)
                if art is not None and art.meta.get("incomplete"):
                    log.info("[bold]%s[/]: some targets failed last time (%s); measuring again (rows measured "
                             "before are reused)", p.name, "; ".join(art.meta["incomplete"]), extra={"markup": True})
                    art = None
                if art is not None:
                    # the store is shared by recipes: show this recipe's stage name, not the first producer's
                    art = dataclasses.replace(art, stage=p.name)
                    log.info("[bold]%s[/] (%s): done before, reusing %s", p.name, p.type, key,
                             extra={"markup": True})
                    result.skipped.append(p.name)
                    state.stage(p.name, status="reused", kind=art.kind, path=str(art.main_path))
                else:
                    art = _run_stage(s, p, key, inputs, recipe, run_dir, store, shared, state, result, fail_fast)
                    if art is None:
                        continue
                    if art.meta.get("incomplete"):      # e.g. an SSH device failed: the report keeps the rest
                        _incomplete(p, art, state, result, fail_fast)
            result.artifacts[p.name] = art
            if art.kind == "report":
                from .report import write_report
                paths = write_report(art.main_path, run_dir)
                log.info("report: %s", ", ".join(str(x) for x in paths))
    except BaseException:
        state.finish("interrupted")
        raise
    state.finish("failed" if not result.ok else "finished")
    return result


def _run_stage(s, p: StagePlan, key: str, inputs: dict, recipe, run_dir, store, shared, state, result,
               fail_fast: bool):
    """Run one stage into a temp folder and commit it; on failure record why and return None."""
    log.info("[bold]%s[/] (%s): running → %s", p.name, p.type, key, extra={"markup": True})
    state.stage(p.name, status="running")
    parents = [a.key for v in inputs.values() for a in (v if isinstance(v, list) else [v]) if a is not None]
    tmp = store.begin(key)
    ctx = Context(recipe, run_dir, tmp, key, p.name, p.type, parents, shared)
    t0 = time.perf_counter()
    try:
        art = registry.run_function(p.type)(s, inputs, ctx)
        art.meta.setdefault("wall_s", round(time.perf_counter() - t0, 1))
        art = store.commit(tmp, art)
    except Exception as e:
        store.abort(tmp)
        wall = round(time.perf_counter() - t0, 1)
        if fail_fast:
            state.stage(p.name, status="failed", error=str(e), error_type=type(e).__name__, wall_s=wall)
            raise
        failure = {"stage": p.name, "type": p.type, "error_type": type(e).__name__, "error": str(e),
                   "figures": getattr(e, "figures", None), "wall_s": wall}
        result.failed[p.name] = failure
        state.stage(p.name, status="failed", **{k: v for k, v in failure.items() if k not in ("stage", "type")})
        log.error("[bold]%s[/] (%s) failed after %.1f s: %s", p.name, p.type, wall, e, extra={"markup": True})
        log.debug("traceback of %s", p.name, exc_info=True)
        return None
    except BaseException:
        store.abort(tmp)     # nothing half-written stays behind, Ctrl-C included
        raise
    wall = time.perf_counter() - t0
    log.info("[bold]%s[/]: finished in %.1f s", p.name, wall, extra={"markup": True})
    result.ran.append(p.name)
    state.stage(p.name, status="done", kind=art.kind, path=str(art.main_path), wall_s=round(wall, 1))
    return art


def _incomplete(p: StagePlan, art: Artifact, state, result: RunResult, fail_fast: bool) -> None:
    """A stage that committed a partial result (a benchmark whose SSH device failed): the stage counts
    as failed (the CLI exits 1), its artifact stays (the report shows the rows that were measured), and
    the next run re-runs it."""
    from .errors import StageError

    error = "; ".join(art.meta["incomplete"])
    result.failed[p.name] = {"stage": p.name, "type": p.type, "error_type": "DeviceError", "error": error,
                             "figures": None, "wall_s": art.meta.get("wall_s")}
    state.stage(p.name, status="incomplete", error=error, kind=art.kind, path=str(art.main_path))
    log.error("[bold]%s[/] (%s) is incomplete: %s", p.name, p.type, error, extra={"markup": True})
    if fail_fast:
        raise StageError(f"{p.name}: {error}")


def _names(refs: dict) -> list[str]:
    return [n for v in refs.values() for n in (v if isinstance(v, list) else [v]) if n]


def _drop_failed(refs: dict, down: set[str]) -> dict | None:
    """The refs without failed stages: a list field (a benchmark's artifacts) loses them; a single
    ref to a failed stage blocks the stage (None). A list left empty blocks it too."""
    out = {}
    for f, v in refs.items():
        if isinstance(v, list):
            kept = [n for n in v if n not in down]
            if not kept:
                return None
            out[f] = kept
        elif v in down:
            return None
        else:
            out[f] = v
    return out


def _with_dependents(plans: list[StagePlan], names: set[str]) -> set[str]:
    out = set(names)
    for p in plans:
        for v in p.inputs.values():
            if any(n in out for n in (v if isinstance(v, list) else [v]) if n):
                out.add(p.name)
    return out

