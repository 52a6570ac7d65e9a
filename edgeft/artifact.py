"""An artifact is what a stage produces: a folder in the store plus a small manifest."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

# encoder: an `adapt` output (MLM weights, no task head): only finetune (and adapt) take it
Kind = Literal["torch", "encoder", "onnx", "openvino", "executorch", "ort", "tensorrt", "report"]
MANIFEST = "artifact.json"


@dataclass
class Artifact:
    key: str                      # content hash that names the store folder
    kind: Kind                    # torch (HF model folder) | encoder | onnx | openvino | engine | report
    stage: str                    # name of the stage that made it
    stage_type: str               # finetune | export | quantize | ...
    path: Path                    # the store folder
    file: str = ""                # main file inside `path` ("" for folder artifacts such as torch)
    meta: dict = field(default_factory=dict)   # precision, parity figures, training metrics, ...
    parents: list[str] = field(default_factory=list)  # keys of input artifacts
    created: str = ""
    # relative path -> {"sha256", "size"} of every file, written by Store.commit and checked by Store.get
    # ({} in manifests written before files were recorded: those load unchecked)
    files: dict = field(default_factory=dict)

    @property
    def main_path(self) -> Path:
        return self.path / self.file if self.file else self.path

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def read(cls, folder: Path) -> Artifact:
        d = json.loads((folder / MANIFEST).read_text())
        d["path"] = Path(folder)   # the folder it lives in now, not where it was written
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def size_mb(self) -> float:
        """Size of what a user would ship: every file of the artifact but the manifest and logs."""
        total = 0
        for p in self.path.rglob("*"):
            if p.is_file() and p.name != MANIFEST and p.parent.name != "logs" and p.suffix != ".log":
                total += p.stat().st_size
        return total / 1e6
