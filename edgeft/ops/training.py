"""Which parameters train: find a transformer's layer stack, freeze embeddings or layers, count parameters.

`encoder_layers` finds a transformer's stack of layers without knowing the architecture;
`freeze` turns off gradients for the embeddings and/or the first N layers.
"""

from __future__ import annotations

# where common architectures keep their layer stack, relative to model.base_model
_LAYER_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer", "h",
                "decoder.layers", "block", "encoder.block")


def _get(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def encoder_layers(model):
    """The ModuleList of transformer layers (input side first). Raises ValueError if none is found.

    Tries the usual attribute paths (BERT `encoder.layer`, DistilBERT `transformer.layer`, ...),
    then any ModuleList under the base model whose length equals `config.num_hidden_layers`.
    """
    import torch.nn as nn

    base = getattr(model, "base_model", model)
    for path in _LAYER_PATHS:
        m = _get(base, path)
        if isinstance(m, nn.ModuleList) and len(m) > 0:
            return m
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if n:
        for m in base.modules():
            if isinstance(m, nn.ModuleList) and len(m) == n:
                return m
    raise ValueError(f"cannot find the layer stack of {type(model).__name__} "
                     f"(looked for base_model.{{{', '.join(_LAYER_PATHS)}}} and a ModuleList of "
                     f"config.num_hidden_layers={n} modules)")


def embeddings_module(model):
    """The whole embeddings block (word, position, type, norm) if the model has one, else the input embeddings."""
    base = getattr(model, "base_model", model)
    emb = getattr(base, "embeddings", None)
    return emb if emb is not None else model.get_input_embeddings()


def freeze(model, embeddings: bool = False, num_layers: int = 0) -> list[str]:
    """Set requires_grad=False on the embeddings and/or the first `num_layers` layers.

    Returns the names (as in model.named_parameters()) of the parameters frozen.
    Raises ValueError if num_layers exceeds the number of layers or the layers cannot be found.
    """
    modules = []
    if embeddings:
        modules.append(embeddings_module(model))
    if num_layers > 0:
        layers = encoder_layers(model)
        if num_layers > len(layers):
            raise ValueError(f"cannot freeze {num_layers} layers: the model has {len(layers)}")
        modules.extend(layers[:num_layers])
    ids = {id(p) for m in modules for p in m.parameters()}
    names = []
    for name, p in model.named_parameters():
        if id(p) in ids:
            p.requires_grad_(False)
            names.append(name)
    return names


def count_params(model) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


class PeakMemory:
    """Peak memory of this process while a block runs (training): `with PeakMemory() as m: ...`, then
    m.peak_rss_mb (resident set), m.start_rss_mb, and m.peak_cuda_mb on a CUDA device.

    On Linux the kernel's high-water mark (VmHWM) is reset on entry (`5` into /proc/self/clear_refs)
    and read on exit: exact, with no sampling. Where that cannot be done, RSS is sampled every 50 ms in
    a thread (m.how says which), which can miss a short spike."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.peak_rss_mb = self.start_rss_mb = self.peak_cuda_mb = None
        self.how = ""

    @staticmethod
    def _status_mb(field: str) -> float | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def __enter__(self):
        import threading

        if self.cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()
        self.start_rss_mb = self._status_mb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.how = "VmHWM"
            return self
        except OSError:
            pass
        import psutil

        proc, self._stop, self._samples = psutil.Process(), threading.Event(), [0.0]

        def sample():
            while not self._stop.is_set():
                self._samples.append(proc.memory_info().rss / 2**20)
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        self.how = "sampled every 50 ms"
        return self

    def __exit__(self, *exc):
        if self.how == "VmHWM":
            self.peak_rss_mb = self._status_mb("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            self.peak_rss_mb = max(self._samples)
        if self.peak_rss_mb is not None:
            self.peak_rss_mb = round(self.peak_rss_mb, 1)
        if self.start_rss_mb is not None:
            self.start_rss_mb = round(self.start_rss_mb, 1)
        if self.cuda:
            import torch
            self.peak_cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return False
