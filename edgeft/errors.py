"""Typed errors. Each carries every failure it found, not just the first."""

from __future__ import annotations


class EdgeftError(Exception):
    """Base class for errors edgeft reports to the user (exit code 1 unless stated)."""

    exit_code = 1


class RecipeError(EdgeftError):
    """An invalid recipe. `problems` is a list of (key path, reason)."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str = "recipe"):
        self.problems = list(problems)
        self.source = source
        lines = [f"{source}: {len(self.problems)} problem(s)"]
        lines += [f"  {path}: {reason}" if path else f"  {reason}" for path, reason in self.problems]
        super().__init__("\n".join(lines))


class DataError(EdgeftError):
    """Data that cannot be read or does not match what the recipe says."""


class ExportParityError(EdgeftError):
    """An exported or quantized model disagrees with its source beyond the allowed tolerance."""

    def __init__(self, what: str, figures: dict, failures: list[str]):
        self.figures = figures
        self.failures = failures
        detail = ", ".join(f"{k}={v}" for k, v in figures.items())
        super().__init__(f"{what} failed its parity check: " + "; ".join(failures) + f" ({detail})")


class StageError(EdgeftError):
    """A stage could not do its work for a reason the user can fix."""


class ArtifactCorruptError(EdgeftError):
    """A committed artifact's file no longer matches the size or sha256 recorded when it was committed."""

    def __init__(self, path, stage: str, key: str, reason: str):
        self.path, self.stage, self.key, self.reason = str(path), stage, key, reason
        super().__init__(f"{path}: the stored artifact of stage {stage!r} ({key}) is corrupt: {reason}. "
                         f"Rerun with `--force {stage}` to rebuild it (and the stages that depend on it)")
