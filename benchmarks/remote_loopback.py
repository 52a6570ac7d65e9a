"""The same artifacts on this machine's `cpu` target and on an SSH device that is this machine again:
a real sshd on 127.0.0.1 (tests/sshd.py) and the numpy + onnxruntime + openvino-only device Python
(.venv-device, `make device-env`). Host and "device" are one CPU, so the rows must agree: the same
accuracy (the device's logits, scored on the host) and p50 ratios near 1 (the same timing protocol,
run by the device runner instead of the stage). Any gap is what the remote path itself costs or
changes. It reuses a finished run's store: only the benchmark runs.

    python -m benchmarks.remote_loopback recipes/minilm-rotten-tomatoes-quick.yaml [--artifacts a,b]

Prints a table (artifact, host p50, device p50, ratio, both accuracies) and writes the report to
runs/<recipe name>-ssh-loopback/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DEFAULT_ARTIFACTS = "onnx,int8-dynamic,student-onnx,student-int8,student-ov-int8"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", help="a recipe whose stages finished (make demo: the quick recipe)")
    ap.add_argument("--artifacts", default=DEFAULT_ARTIFACTS, help=f"stages to measure (default {DEFAULT_ARTIFACTS})")
    ap.add_argument("--bench", default="bench", help="the recipe's benchmark stage whose settings are used")
    ap.add_argument("--runs", default="runs")
    args = ap.parse_args(argv)

    import yaml

    from edgeft.recipe import validate_recipe
    from edgeft.runner import run_recipe
    from tests import sshd

    if (why := sshd.missing()) is not None:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    path = Path(args.recipe)
    raw = yaml.safe_load(path.read_text())
    names = [a.strip() for a in args.artifacts.split(",") if a.strip()]
    bench = next(s for s in raw["stages"] if s["name"] == args.bench)
    with tempfile.TemporaryDirectory(prefix="edgeft-loopback-") as tmp:
        server = sshd.SshServer(Path(tmp) / "sshd").start()
        try:
            device = {"name": "loopback", "ssh": server.host, "ssh_config": str(server.ssh_config),
                      "python": str(sshd.DEVICE_VENV / "bin" / "python"), "workdir": str(Path(tmp) / "device")}
            targets = ["cpu", {**device, "runtime": "onnxruntime"}]
            if any("ov" in n for n in names):
                targets += ["openvino", {**device, "name": "loopback-ov", "runtime": "openvino"}]
            keep = {k: v for k, v in bench.items() if k not in ("artifacts", "targets", "reference", "name")}
            raw["stages"] = [s for s in raw["stages"] if s.get("type") != "benchmark"] + [
                {**keep, "name": "bench-ssh", "artifacts": ["@" + n for n in names], "targets": targets,
                 "memory": False}]
            raw["name"] = f"{raw['name']}-ssh-loopback"
            recipe = validate_recipe(raw, base_dir=path.resolve().parent)
            result = run_recipe(recipe, runs_dir=args.runs)
        finally:
            server.stop()
    if "bench-ssh" not in result.artifacts:
        print(f"the benchmark did not run: {result.failed or result.blocked}", file=sys.stderr)
        return 1
    report = json.loads(result.artifacts["bench-ssh"].main_path.read_text())
    rows = {(r["artifact"], r["target"]): r for r in report["rows"]}
    env = report["environment"]
    print(f"host = device: {env['cpu']}, ISA {' '.join(env['isa'])}, {env['cores']} cores")
    print(f"{'artifact':18s} {'runtime':12s} {'host p50':>9s} {'device p50':>11s} {'ratio':>6s} "
          f"{'host acc':>9s} {'device acc':>11s}")
    for (art, target), r in rows.items():
        if r.get("device"):
            continue
        dev = rows.get((art, "loopback" if target == "cpu" else "loopback-ov"))
        if dev is None:
            continue
        h, d = r["latency_ms"]["p50"], dev["latency_ms"]["p50"]
        print(f"{art:18s} {target:12s} {h:9.2f} {d:11.2f} {d / h:6.2f} {100 * r['accuracy']:8.2f}% "
              f"{100 * dev['accuracy']:10.2f}%")
    print(f"report: {result.run_dir / 'report.md'}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
