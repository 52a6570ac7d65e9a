"""What a stage's `run` gets besides its config and inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .artifact import Artifact

if TYPE_CHECKING:
    from .recipe import Recipe

log = logging.getLogger("edgeft")


@dataclass
class Context:
    recipe: Recipe
    run_dir: Path                 # runs/<recipe name>/: reports and logs
    out_dir: Path                 # the stage's temp folder: write outputs here, nothing else
    key: str                      # the artifact key this stage will commit under
    stage_name: str
    stage_type: str
    parents: list[str]
    _splits: dict = field(default_factory=dict)   # shared across stages of one run

    @property
    def task(self):
        from .tasks import get_task

        return get_task(self.recipe.task)

    def splits(self):
        """The recipe's data splits, loaded once per run."""
        if "splits" not in self._splits:
            s = self.task.load_splits(self.recipe)
            log.info("data: train %d, validation %d, test %d (labels: %s)", len(s.train), len(s.validation),
                     len(s.test), ", ".join(s.label_names))
            self._splits["splits"] = s
        return self._splits["splits"]

    @property
    def failures(self) -> list[dict]:
        """Stages of this run that failed so far ({stage, type, error_type, error, figures, wall_s}), and
        those not run because they needed one ({stage, blocked_by}): the report lists both."""
        out = list(self._splits.get("failures", {}).values())
        out += [{"stage": n, "blocked_by": needs} for n, needs in self._splits.get("blocked", {}).items()]
        return out

    def artifact(self, kind: str, file: str = "", meta: dict | None = None) -> Artifact:
        """The Artifact this stage returns; the runner commits it atomically."""
        return Artifact(key=self.key, kind=kind, stage=self.stage_name, stage_type=self.stage_type,
                        path=self.out_dir, file=file, meta=meta or {}, parents=list(self.parents))
