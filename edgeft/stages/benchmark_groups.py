"""The benchmark's rows by where they run: each group (this machine, each SSH device) is measured and
cached on its own in the store, keyed by the timing settings, the artifacts, their encoded inputs and
the fingerprint of where it ran — so a re-run after one device failed re-measures only that device,
and a device whose runtime or CPU changed is measured again. The SSH side: targets/remote.py.
"""

from __future__ import annotations

import logging

log = logging.getLogger("edgeft")


def group_key(cfg, where: dict, group: list, prepared: dict) -> str:
    """The cache key of one group's rows: the timing settings, the artifacts, their encoded inputs and
    `where` they run (this machine's or the device's fingerprint and target settings)."""
    from ..store import cache_key

    settings = cfg.model_dump(mode="json", exclude={"name", "type", "input", "artifacts", "targets", "reference"})
    keys = [a.key for _, a in group]
    return cache_key("benchmark-rows", cfg.version, settings, keys,
                     {a.key: prepared[a.key].inputs_hash for _, a in group}, where)


def cached_group(store, key: str, ctx, measure) -> dict:
    """One group's {"rows", "raw", "environment"}: from the store if measured before, else measured and
    committed (atomically, like a stage), so a re-run after one device failed re-measures only that one."""
    import json

    from ..artifact import Artifact

    with store.lock(key):
        art = store.get(key)
        if art is not None:
            log.info("rows of %s measured before with the same settings and fingerprint: reusing %s",
                     art.meta.get("where"), key)
            return json.loads(art.main_path.read_text())
        tmp = store.begin(key)
        try:
            data = measure()
            (tmp / "rows.json").write_text(json.dumps(data))
            store.commit(tmp, Artifact(key=key, kind="report", stage=ctx.stage_name, stage_type="benchmark-rows",
                                       path=tmp, file="rows.json", meta={"where": data["where"]}))
        except BaseException:
            store.abort(tmp)
            raise
        return data


def measure_local(cfg, ctx, store, group: list, prepared: dict) -> dict:
    """This machine's rows: sessions loaded, accuracy, interleaved timing, then sizes, counts, memory."""
    from ..ops.timing import load_avg
    from ..targets.fingerprint import host_fingerprint, runtime_versions

    where = {"host": host_fingerprint(stable=True), "runtimes": runtime_versions(),
             "targets": sorted({t for t, _ in group})}

    def measure():
        predictions: dict[str, list[int]] = {}
        rows, sessions = accuracy_rows(cfg, ctx.task, ctx.splits(), group, prepared, predictions)
        timing = time_sessions(cfg, sessions, [prepared[a.key].inputs for _, a in group])
        after = load_avg()
        for i, (row, sess, (t, a)) in enumerate(zip(rows, sessions, group)):
            fill_row(row, cfg, ctx, t, a, prepared[a.key], timing, i, sess)
        for s in sessions:
            s.close()
        raw = {f"{rows[i]['artifact']}@{rows[i]['target']}:{kind}": [round(v, 4) for v in ms]
               for (i, kind), ms in timing.times.items()}
        env = {"others_cpu_share": timing.others_cpu_share, "busy": timing.busy,
               "load_avg_1min": [timing.load_avg_1min[0], after]}      # [before timing, after timing]
        return {"where": "this machine", "rows": rows, "raw": raw, "environment": env, "predictions": predictions}

    return cached_group(store, group_key(cfg, where, group, prepared), ctx, measure)


def measure_device(cfg, ctx, store, t, group: list, prepared: dict) -> dict:
    """An SSH device's rows (targets/remote.py): connect and fingerprint it, then (unless its rows with
    this fingerprint are cached) send what it lacks, run one job that times every row interleaved, and
    compute accuracy here from the logits it sent back."""
    from ..targets.remote import SshDevice, stable_fingerprint

    device = SshDevice(t, ctx.recipe.base_dir)
    try:
        log.info("%s: connecting (%s)", t.name, t.describe())
        info = device.connect()
        device.check_runtime(info)
        fp = info["fingerprint"]
        log.info("%s: %s, %s, %s cores, %s", t.name, fp.get("cpu"), fp.get("arch"), fp.get("cores"),
                 ", ".join(f"{k} {v}" for k, v in fp.get("runtimes", {}).items()))
        settings = t.model_dump(mode="json", include={"ssh", "runtime", "threads", "python", "emulated"})
        where = {"device": stable_fingerprint(info), "target": settings, "threads": t.threads or cfg.threads}
        return cached_group(store, group_key(cfg, where, group, prepared), ctx,
                            lambda: device_rows(cfg, ctx, device, t, group, prepared, info))
    finally:
        device.close()


def device_rows(cfg, ctx, device, t, group: list, prepared: dict, info) -> dict:
    import io

    import numpy as np

    from ..device import PROTOCOL
    from ..device.protocol import check_protocol, pack_inputs
    from ..ops.timing import batch_size, row_figures
    from ..targets import row_precision
    from ..targets.remote import DeviceError, artifact_files, content_hash, file_hashes

    task, splits = ctx.task, ctx.splits()
    objects, specs = {}, []
    for _, a in group:
        files = artifact_files(a)
        h = content_hash(file_hashes(a, files))
        objects[h] = files
        p = prepared[a.key]
        if p.inputs_hash not in objects:
            buf = io.BytesIO()
            x = p.inputs
            np.savez(buf, **pack_inputs(x.evals, x.real, x.fixed, x.tp))
            objects[p.inputs_hash] = {"inputs.npz": buf.getvalue()}
        specs.append({"model": f"objects/{h}/{a.main_path.name}", "inputs": f"objects/{p.inputs_hash}/inputs.npz",
                      "text": ctx.recipe.task == "text-classification"})
    sent = device.send(objects)
    log.info("%s: %d of %d object(s) sent (the others were on the device already); timing %d row(s) there",
             t.name, sent, len(objects), len(group))
    threads = t.threads or cfg.threads
    job = {"protocol": PROTOCOL, "runtime": t.runtime, "threads": threads, "rounds": cfg.rounds,
           "warmup": cfg.warmup, "fixed_runs": cfg.fixed_runs, "rows": specs}
    result, logits = device.run_job(job)
    try:
        check_protocol(result.get("protocol"), "device")
    except RuntimeError as e:
        raise DeviceError(t.name, "fetch", str(e)) from None
    rows, raw, predictions = [], {}, {}
    for i, (_, a) in enumerate(group):
        p = prepared[a.key]
        if i not in logits or len(result["rows"]) <= i:
            raise DeviceError(t.name, "fetch", f"the job returned no result for row {i} ({a.stage})")
        lg = np.zeros((len(splits.test), len(splits.label_names)), dtype=np.float32)
        for j, (ix, _) in enumerate(p.inputs.evals):
            lg[ix] = logits[i][f"eval/{j}"]
        m = task.metrics(lg, splits.test.labels)
        predictions[f"{a.stage}@{t.name}"] = lg.argmax(-1).tolist()
        times = result["rows"][i]["times_ms"]
        row = {"artifact": a.stage, "stage": a.stage_type, "key": a.key, "target": t.name, "device": t.name,
               "emulated": t.emulated, "precision": row_precision(a.meta.get("precision", "fp32"), t.runs_as),
               "threads": threads, "accuracy": m["accuracy"], "f1": m["f1"], "torch_source": p.ancestor}
        row.update(row_figures(times["real"], times["fixed"], times["tp"], [batch_size(b) for b in p.inputs.tp]))
        sizes_and_counts(row, ctx, a, p)
        # one runner process loads every row of the job: its peak is the job's, not a row's
        row.update(peak_rss_mb=None, model_rss_mb=None, baseline_rss_mb=None,
                   device_job_peak_rss_mb=result.get("peak_rss_mb"))
        row["fingerprint"] = {**result["fingerprint"], "device": t.name, "ssh": t.ssh, "emulated": t.emulated}
        if result["rows"][i].get("shapes"):
            row["shapes"] = result["rows"][i]["shapes"]
        rows.append(row)
        raw.update({f"{a.stage}@{t.name}:{kind}": [round(v, 4) for v in ms] for kind, ms in times.items()})
    env = {t.name: {"others_cpu_share": result.get("others_cpu_share"), "busy": result.get("busy"),
                    "load_avg_1min": result.get("load_avg_1min"), "temperature_c": result.get("temperature_c"),
                    "memory_available_mb": info.get("memory_available_mb"), "disk_free_mb": info.get("disk_free_mb"),
                    "objects_sent": sent}}
    return {"where": f"device {t.name}", "rows": rows, "raw": raw, "environment": env, "predictions": predictions}


def agreement_with_host(rows: list[dict], predictions: dict[str, list[int]]) -> None:
    """On each SSH device row: the share of test examples where it predicts the class this machine's
    row of the same artifact on the same runtime predicts (`agreement_with_host`, with `host_row`);
    None where this machine did not run that artifact on that runtime."""
    import numpy as np

    from ..targets.remote import RUNS_AS

    for r in rows:
        if not r.get("device"):
            continue
        runtime = (r.get("fingerprint") or {}).get("runtime", "").split(" ")[0]
        host = f"{r['artifact']}@{RUNS_AS.get(runtime, '')}"
        mine = predictions.get(f"{r['artifact']}@{r['target']}")
        if host in predictions and mine is not None:
            r["host_row"] = host
            r["agreement_with_host"] = round(float(np.mean(np.asarray(mine) == np.asarray(predictions[host]))), 4)
        else:
            r["host_row"] = r["agreement_with_host"] = None


def accuracy_rows(cfg, task, splits, pairs, prepared, predictions: dict) -> tuple[list[dict], list]:
    """Load every pair's session and start its row with accuracy and F1 on the whole test split (each
    row's predicted classes into `predictions`, by "artifact@target")."""
    import numpy as np

    from ..targets import row_precision, target_module

    rows, sessions = [], []
    for t, a in pairs:
        sess = target_module(t).load(a, cfg.threads, task)
        p = prepared[a.key]
        logits = np.zeros((len(splits.test), len(splits.label_names)), dtype=np.float32)
        for ix, batch in p.inputs.evals:
            logits[ix] = sess.run(batch)
        m = task.metrics(logits, splits.test.labels)
        predictions[f"{a.stage}@{t}"] = logits.argmax(-1).tolist()
        sessions.append(sess)
        rows.append({"artifact": a.stage, "stage": a.stage_type, "key": a.key, "target": t, "device": None,
                     "precision": row_precision(a.meta.get("precision", "fp32"), t), "threads": cfg.threads,
                     "accuracy": m["accuracy"], "f1": m["f1"], "torch_source": p.ancestor})
    return rows, sessions


def time_sessions(cfg, sessions, inputs):
    """The interleaved timing of every session on its inputs (ops.timing.time_rows), with a progress bar."""
    from tqdm.auto import tqdm

    from ..ops.timing import time_rows
    from ..targets.inputs import timed_row

    timed = [timed_row(s, x) for s, x in zip(sessions, inputs)]
    log.info("timing %d row(s): %d round(s) of %d real-length + %d fixed-shape requests and %d batches each",
             len(timed), cfg.rounds, len(inputs[0].real), cfg.fixed_runs, cfg.throughput_batches)
    with tqdm(total=cfg.rounds * 3 * len(timed), desc="benchmark", unit="block", leave=False) as bar:
        return time_rows(timed, cfg.rounds, cfg.warmup, cfg.fixed_runs, on_block=lambda r, n: bar.update(1))


def sizes_and_counts(row: dict, ctx, a, p) -> None:
    """The row's sizes (weights shipped, every file) and its torch ancestor's params and MACs."""
    from ..targets.base import weights_mb

    task, recipe = ctx.task, ctx.recipe
    row["size_mb"] = round(weights_mb(a), 3)
    row["files_mb"] = round(a.size_mb(), 3)
    row["params"] = p.counts.get("params")
    row["macs"] = p.counts.get("macs")
    row["macs_shape"] = task.fixed_shape(recipe.data)
    row["fixed_gops"] = (round(2 * row["macs"] / (row["latency_fixed_ms"]["p50"] / 1e3) / 1e9, 1)
                         if row["macs"] else None)


def fill_row(row: dict, cfg, ctx, target: str, a, p, timing, i: int, sess) -> None:
    """Row i's timing figures, sizes, counts, memory, fingerprint and (OpenVINO) shape notes."""
    from ..ops.timing import batch_size, gpu_figures, row_figures
    from ..targets import target_module
    from ..targets.fingerprint import host_fingerprint, runtime_versions
    from ..targets.memprobe import measure_in_subprocess

    recipe, t = ctx.recipe, timing.times
    row.update(row_figures(t[(i, "real")], t[(i, "fixed")], t[(i, "tp")], [batch_size(b) for b in p.inputs.tp]))
    row.update(gpu_figures(timing, i))
    sizes_and_counts(row, ctx, a, p)
    row.update(measure_in_subprocess(target, a, cfg.threads, recipe.data.max_length, recipe.task) if cfg.memory
               else {"peak_rss_mb": None, "model_rss_mb": None, "baseline_rss_mb": None})
    row["fingerprint"] = {**host_fingerprint(), "runtimes": runtime_versions(),
                          **target_module(target).fingerprint(cfg.threads)}
    if hasattr(sess, "shape_notes"):       # e.g. which OpenVINO length buckets passed their check
        row["shapes"] = sess.shape_notes()
    if hasattr(sess, "footprint"):         # mobile runtimes: what the runtime itself must carry
        row["runtime_footprint"] = sess.footprint()
