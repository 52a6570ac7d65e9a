"""What every stage config shares. Configs are data; the work is the module's `run` function."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..schema import NAME_RE, REF_RE, Strict


class StageConfig(Strict):
    name: str = Field(pattern=NAME_RE, description="unique within the recipe; used in @refs")
    input: str | None = Field(None, pattern=REF_RE,
                              description="@stage whose artifact this stage works on; default: "
                                          "the previous model-producing stage (the recipe's model for the first)")

    version: ClassVar[int] = 1               # bump when the stage's output changes for the same config
    accepts: ClassVar[tuple[str, ...]] = ()  # artifact kinds accepted as `input`

    def produces(self) -> str:
        raise NotImplementedError

    def refs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(key path, '@ref', accepted kinds) for every reference besides `input`."""
        return []

    def files(self, recipe) -> dict[str, str]:
        """Files this stage reads whose content is part of its cache key: {key path: path}."""
        return {}

    def check(self, recipe, stages: list) -> list[tuple[str, str]]:
        """Cross-field checks that need the recipe and the parsed stages (None where a stage failed
        to parse): (key path relative to the stage, reason)."""
        return []

    def target_limits(self) -> tuple[tuple[str, ...], str] | None:
        """(the only targets this stage's artifact runs on, why), or None: every target of its kind."""
        return None

    def warnings(self, recipe, stages: list) -> list[tuple[str, str]]:
        """Things that are allowed but probably not what the user wants: (key path, reason).
        Logged at load time; errors when the recipe sets `strict: true`."""
        return []

    def key_config(self) -> dict:
        """The config as it enters the cache key. The stage's name and its `input` ref are left out
        (the input's key is in the cache key already): renaming a stage redoes nothing."""
        return self.model_dump(mode="json", exclude={"name", "input"})


# the CPU class an INT8 artifact is made for (edgeft/isa.py): auto = this machine
IsaName = Literal["auto", "avx2", "avx512", "avx512_vnni", "avx_vnni", "vnni", "amx", "arm64", "arm64_dotprod", "x86"]


def isa_warnings(isa: str) -> list[tuple[str, str]]:
    """An INT8 stage made for another CPU class than this machine's: its parity gate runs on this
    machine's kernels, so it cannot see what that CPU's kernels do differently."""
    from ..isa import host_isa_class, resolve

    if isa == "auto":
        return []
    cls, host = resolve(isa)[0], host_isa_class()
    if cls == host:
        return []
    return [("isa", f"INT8 made for {isa} (class {cls}) on this {host}-class machine: the format is {cls}'s, but the "
                    f"parity gate runs on this machine's kernels; benchmark it on the device itself")]


def with_int8_isa(key_config: dict, isa: str) -> dict:
    """An INT8 stage's cache key config plus the CPU class its format is for: with `isa: auto` the format
    depends on this machine's class, so a machine of another class makes (and keys) its own."""
    from ..isa import resolve

    return {**key_config, "int8_isa": resolve(isa)[0]}
