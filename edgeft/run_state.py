"""runs/<name>/run.json: the state of a run, in one file, always current.

Written when the run starts (the resolved recipe, every stage pending) and rewritten atomically
(write + rename) whenever a stage changes state: pending, running, done, reused, failed (with the
error and its figures), blocked (needs a failed stage); the run's status is running, finished,
failed or interrupted. A crash leaves the last state, never a new recipe beside an old report.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

RUN_STATE = "run.json"


class RunState:
    """runs/<name>/run.json: the resolved recipe and every stage's status, key, artifact and failure,
    rewritten atomically (write + rename) whenever a stage changes state."""

    def __init__(self, run_dir: Path, recipe, plans):
        self.path = run_dir / RUN_STATE
        now = _now()
        self.data = {"recipe": recipe.dump(), "status": "running", "started": now, "updated": now,
                     "pid": os.getpid(), "recipe_dir": str(recipe.base_dir),
                     "stages": {p.name: {"type": p.type, "key": p.key, "status": "pending"} for p in plans}}
        self.save()

    def stage(self, name: str, **fields) -> None:
        self.data["stages"][name].update(fields)
        self.save()

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.save()

    def save(self) -> None:
        self.data["updated"] = _now()
        part = self.path.with_name(self.path.name + ".part")
        part.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(part, self.path)


def read_run_state(run_dir: str | Path) -> dict:
    """The run.json of a run folder (see RunState)."""
    path = Path(run_dir) / RUN_STATE
    if not path.is_file():
        from .errors import EdgeftError
        raise EdgeftError(f"{path} not found: run the recipe first (edgeft run RECIPE)")
    return json.loads(path.read_text())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

