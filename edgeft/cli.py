"""Command line: subcommands only, no logic (that lives in runner, recipe, report)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import EdgeftError, RecipeError


def _setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    # in a log file or CI, rich would wrap at 80 columns and cut figures in half
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(console=console, show_path=False, markup=True)])
    for noisy in ("httpx", "urllib3", "matplotlib", "PIL", "nncf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_validate(args) -> int:
    from .recipe import load_recipe

    bad = 0
    for path in args.recipes:
        try:
            r = load_recipe(path, args.override)
            print(f"{path}: ok ({r.name}: {len(r.stages)} stages: {', '.join(s.name for s in r.stages)})")
        except RecipeError as e:
            print(str(e), file=sys.stderr)
            bad += 1
    return 2 if bad else 0


def cmd_run(args) -> int:
    import time

    from .recipe import load_recipe
    from .runner import run_recipe

    t0 = time.perf_counter()
    recipe = load_recipe(args.recipe, args.override)
    result = run_recipe(recipe, runs_dir=args.runs, store_dir=args.store, force=args.force,
                        fail_fast=args.fail_fast)
    _print_summary(result, time.perf_counter() - t0)
    return 0 if result.ok else 1


def _print_summary(result, wall_s: float) -> None:
    """The report's table, the failed branches, and where the files are."""
    import json

    from rich.console import Console
    from rich.table import Table

    from .report import summary_table

    console = Console(width=None if sys.stdout.isatty() else 160)
    report = result.run_dir / "report.json"
    if report.exists() and any(a.kind == "report" for a in result.artifacts.values()):
        data = json.loads(report.read_text())
        header, *rows = summary_table(data)
        table = Table(title=f"{data.get('recipe', {}).get('name', '')}: test accuracy and batch-1 latency "
                            f"(* = Pareto front of its target)")
        for h in header:
            table.add_column(h, justify="left" if h in ("artifact", "target", "precision") else "right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    for name, f in result.failed.items():
        console.print(f"[red]failed[/]: {name} ({f['type']}): {f['error']}")
    for name, needs in result.blocked.items():
        console.print(f"[yellow]not run[/]: {name} (needs {', '.join('@' + n for n in needs)})")
    console.print(f"ran {len(result.ran)} stage(s), reused {len(result.skipped)}, failed {len(result.failed)}, "
                  f"not run {len(result.blocked)} in {wall_s / 60:.1f} min; run folder: {result.run_dir} "
                  f"(run.json: every stage's state)")
    if report.exists():
        console.print(f"report: {result.run_dir / 'report.md'} (also report.json, pareto.png)")
    if not result.ok:
        console.print("[red]some stages failed[/]: fix the cause (or their settings) and run the same command "
                      "again; finished stages are reused")


def cmd_report(args) -> int:
    from .report import write_report

    run_dir = Path(args.run_dir)
    src = run_dir / "report.json"
    if not src.is_file():
        raise EdgeftError(f"{src} not found: run a recipe with a benchmark stage first")
    for p in write_report(src, run_dir):
        print(p)
    return 0


def cmd_ls(args) -> int:

    from .store import Store

    store = Store(args.store or Path(args.runs) / ".store")
    for folder in sorted(store.root.iterdir()):
        art = store.get(folder.name, verify=False)   # listing: no hashing (edgeft run verifies)
        if art is not None:
            print(f"{art.key}  {art.kind:8s} {art.stage:20s} {art.created}  {art.size_mb():8.1f} MB")
    return 0


def cmd_targets(args) -> int:
    from .targets import TARGETS, unavailable_reason

    if args.check:
        return check_targets(args.check, args.override)
    for t in TARGETS.values():
        width = max(len(n) for n in TARGETS)
        why = unavailable_reason(t.name)
        print(f"{t.name:{width}s}  runs {', '.join(t.accepts):16s} {t.description}"
              + (f"\n{'':{width}s}  NOT ON THIS MACHINE: {why}" if why else ""))
    print("\nSSH devices: a benchmark target {name, ssh, runtime, ...}; `edgeft targets --check RECIPE` "
          "connects to each")
    return 0


def check_targets(recipe_path: str, overrides: list[str]) -> int:
    """Connect to every target of the recipe's benchmarks: this machine's fingerprint and the local
    targets it cannot run; per SSH device its fingerprint and what is missing. Exit 1 if any failed."""
    from .recipe import load_recipe
    from .targets import TARGETS, unavailable_reason
    from .targets.fingerprint import host_fingerprint, runtime_versions
    from .targets.remote import DeviceError, RemoteTarget, SshDevice

    recipe = load_recipe(recipe_path, overrides, check_data=False)
    targets = {}
    for s in recipe.stages:
        for t in getattr(s, "targets", None) or ():
            targets.setdefault(t if isinstance(t, str) else t.name, t)
    bad = 0
    host = host_fingerprint()
    print(f"this machine: {host['cpu']}, {host['machine']}, {host['cores']} cores; ISA {' '.join(host['isa'])}; "
          f"{host['os']}; " + ", ".join(f"{k} {v}" for k, v in runtime_versions().items()))
    for name, t in targets.items():
        if not isinstance(t, RemoteTarget):
            reason = unavailable_reason(name) if name in TARGETS else "unknown target"
            print(f"  {name}: {'cannot run here: ' + reason if reason else 'ok'}")
            bad += bool(reason)
            continue
        print(f"{name}: {t.describe()}")
        dev = SshDevice(t, recipe.base_dir)
        try:
            info = dev.connect()
            fp = info["fingerprint"]
            mem = f", {fp['memory_mb'] / 1024:.1f} GB RAM" if fp.get("memory_mb") else ""
            print(f"  cpu {fp.get('cpu')}, {fp.get('arch')}, {fp.get('cores')} cores{mem}; ISA "
                  f"{' '.join(fp.get('isa') or []) or '—'}")
            print(f"  {fp.get('os')}; python {fp.get('python')}, numpy {fp.get('numpy')}; runtimes: "
                  + (", ".join(f"{k} {v}" for k, v in fp.get("runtimes", {}).items()) or "none"))
            temp = info.get("temperature_c")
            print(f"  free: {info.get('memory_available_mb')} MB memory, {info.get('disk_free_mb')} MB disk in "
                  f"{t.workdir}" + (f"; {temp:.0f} °C" if temp is not None else "; temperature not readable"))
            dev.check_runtime(info)
            print("  ok")
        except DeviceError as e:
            print(f"  missing / failed: {e}")
            bad += 1
        finally:
            dev.close()
    return 1 if bad else 0


def cmd_calibration(args) -> int:
    from .calibration import check_request, write_manifest
    from .recipe import load_recipe

    problems = check_request(args.split, args.num_samples, args.seed)
    if problems:                       # before the recipe's data is loaded
        opts = {"num_samples": "-n/--num-samples", "seed": "--seed", "split": "--split"}
        raise RecipeError([(opts.get(p, p), r) for p, r in problems], source="edgeft calibration")
    recipe = load_recipe(args.recipe, args.override, data_only=True)
    path = write_manifest(recipe, args.output, args.split, args.num_samples, args.seed)
    print(f"wrote {path}")
    return 0


def cmd_init(args) -> int:
    from .init_recipe import print_summary, write_starter

    found, output, manifest, recipe = write_starter(args.data, args.output, args.task, args.text_column,
                                                    args.label_column, args.force)
    print_summary(found, output, manifest, recipe)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgeft", description="Fine-tune, compress, export and benchmark models "
                                 "for edge devices from one recipe.")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def with_overrides(p):
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="change a recipe value, e.g. -o stages.finetune.epochs=1 (repeatable)")

    p = sub.add_parser("validate", help="check recipes without doing any work")
    p.add_argument("recipes", nargs="+")
    with_overrides(p)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("run", help="run a recipe (resumes: finished stages are reused)")
    p.add_argument("recipe")
    with_overrides(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="redo this stage and every stage that depends on it (repeatable)")
    p.add_argument("--runs", default="runs", help="folder for run outputs (default: runs)")
    p.add_argument("--store", default=None, help="artifact store (default: RUNS/.store)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first failed stage (default: run every branch that does not need it, "
                        "report the failures, exit 1 at the end)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("report", help="re-render report.md and pareto.png from RUN_DIR/report.json")
    p.add_argument("run_dir")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("ls", help="list artifacts in the store")
    p.add_argument("--runs", default="runs")
    p.add_argument("--store", default=None)
    p.set_defaults(fn=cmd_ls)

    p = sub.add_parser("targets", help="list benchmark targets; --check RECIPE connects to its SSH devices")
    p.add_argument("--check", metavar="RECIPE", help="connect to every target of RECIPE's benchmarks and print "
                   "each device's fingerprint (CPU, arch, cores, memory, OS, runtimes, ISA, temperature) and what "
                   "is missing; exit 1 if one fails")
    with_overrides(p)
    p.set_defaults(fn=cmd_targets)

    p = sub.add_parser("calibration", help="write a calibration manifest drawn from a recipe's data")
    p.add_argument("recipe")
    p.add_argument("-n", "--num-samples", type=int, default=256)
    p.add_argument("--split", default="train", choices=["train", "validation", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)
    with_overrides(p)
    p.set_defaults(fn=cmd_calibration)

    p = sub.add_parser("init", help="look at a CSV/TSV/JSONL file or an image folder and write a starter recipe")
    p.add_argument("data", help="a table with a text and a label column, or a folder of class folders "
                                "(or of train/ and test/ folders of class folders)")
    p.add_argument("--task", choices=["text", "image", "text-classification", "image-classification"],
                   help="default: image for a folder, text for a file")
    p.add_argument("-o", "--output", default="recipe.yaml", help="the recipe to write (default: recipe.yaml); "
                   "its calibration manifest goes next to it as NAME.calibration.yaml")
    p.add_argument("--text-column", help="the text column (default: the string column with the longest texts)")
    p.add_argument("--label-column", help="the label column (default: one named label, category, class, target, "
                   "sentiment, ...; else the one with the fewest distinct values)")
    p.add_argument("--force", action="store_true", help="overwrite the recipe and manifest if they exist")
    p.set_defaults(fn=cmd_init)

    args = ap.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.fn(args)
    except RecipeError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except EdgeftError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
