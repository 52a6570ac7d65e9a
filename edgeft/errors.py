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
