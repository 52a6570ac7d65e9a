"""Image classifiers (CNNs) in edgeft's torch folder format, and the wrapper that lets HF Trainer train them.

Folder format (what finetune, prune and distill write and every later stage loads):

    config.json              {"format": "edgeft-cnn/1", "arch": "efficientnet-lite0", "image_size": 64,
                              "num_labels": 10, "id2label": {...}, "label2id": {...},
                              "modules": {"_conv_stem": {"type": "Conv2d", "in_channels": 3, ...}, ...}}
    model.safetensors        the state dict (weights and BatchNorm statistics), loaded safely
    preprocessor_config.json resize / normalization (tasks/image_classification.py)

`modules` records the shape of every Conv2d, BatchNorm2d and Linear, so a channel-pruned model
(other conv widths) loads: the base architecture is built, each listed module is resized to its
saved shape, then the weights are loaded with `strict=True`. Nothing is unpickled.
A user's own model folder in this format (`model.source: ./my-cnn`) loads the same way; a
`model.pt`/`.pth` state dict instead of safetensors is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgeftError

FORMAT = "edgeft-cnn/1"
WEIGHTS = "model.safetensors"
BN_MOMENTUM = 0.1     # PyTorch's default; the package keeps TF's 0.01, with which fine-tuning stalls


# ----------------------------------------------------------------------------- architectures

def _efficientnet_lite(name: str):
    def build(num_classes: int, image_size: int, pretrained_weights: str | None = None):
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained_weights:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):    # the package prints "Loaded pretrained weights"
                net = EfficientNet.from_pretrained(name, weights_path=pretrained_weights, num_classes=num_classes,
                                                   image_size=image_size)
        else:
            net = EfficientNet.from_name(name, num_classes=num_classes, image_size=image_size)
        return net
    return build


# arch name -> builder(num_classes, image_size, pretrained_weights) -> nn.Module returning logits
ARCHS = {f"efficientnet-lite{i}": _efficientnet_lite(f"efficientnet-lite{i}") for i in range(5)}


def classifier_module(net):
    """The final Linear (left out of channel pruning: its outputs are the classes)."""
    import torch.nn as nn

    fc = getattr(net, "_fc", None)
    if isinstance(fc, nn.Linear):
        return fc
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise EdgeftError(f"{type(net).__name__} has no Linear classifier")
    return linears[-1]


def set_bn_momentum(net, momentum: float = BN_MOMENTUM) -> int:
    import torch.nn as nn

    n = 0
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
            n += 1
    return n


# ----------------------------------------------------------------------------- the wrapper


class CNNConfig:
    """What config.json holds, with the attribute names stages read from HF configs (id2label, num_labels)."""

    def __init__(self, arch: str, image_size: int, id2label: dict, modules: dict | None = None):
        self.arch = arch
        self.image_size = int(image_size)
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.label2id = {v: k for k, v in self.id2label.items()}
        self.num_labels = len(self.id2label)
        self.modules = modules or {}
        self.model_type = arch

    def to_dict(self) -> dict:
        return {"format": FORMAT, "arch": self.arch, "image_size": self.image_size, "num_labels": self.num_labels,
                "id2label": {str(k): v for k, v in self.id2label.items()}, "label2id": self.label2id,
                "modules": self.modules}

    def save_pretrained(self, folder) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text(json.dumps(self.to_dict(), indent=2))


def _classifier_class():
    import torch
    import torch.nn as nn
    from transformers.modeling_outputs import SequenceClassifierOutput

    class ImageClassifier(nn.Module):
        """`forward(pixel_values, labels=None)` -> SequenceClassifierOutput(loss, logits): what HF Trainer,
        the export wrapper and the pytorch target call. `net` is the bare CNN."""

        main_input_name = "pixel_values"

        def __init__(self, net, config: CNNConfig):
            super().__init__()
            self.net = net
            self.config = config

        def forward(self, pixel_values, labels=None):
            if self.training:     # channels-last convolutions train ~1.5x faster on CPU (oneDNN)
                pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
            logits = self.net(pixel_values)
            loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)

        def state_dict(self, *args, **kwargs):
            # channels-last weights are not contiguous; safetensors (also in Trainer's checkpoints) needs them to be
            sd = super().state_dict(*args, **kwargs)
            if not kwargs.get("keep_vars"):     # keep_vars: the tracer maps the Parameters themselves
                for k, v in sd.items():
                    sd[k] = v.contiguous()
            return sd

        def save_pretrained(self, folder, safe_serialization: bool = True, **_):
            from safetensors.torch import save_file

            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            self.config.modules = module_shapes(self.net)
            self.config.save_pretrained(folder)
            state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
            save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})

    return ImageClassifier


def wrap(net, config: CNNConfig):
    import torch

    return _classifier_class()(net.to(memory_format=torch.channels_last), config)


# ----------------------------------------------------------------------------- shapes


def module_shapes(net) -> dict:
    """Every Conv2d / BatchNorm2d / Linear of `net` with the sizes that define its parameters."""
    import torch.nn as nn

    out = {}
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                         "groups": m.groups, "bias": m.bias is not None}
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = {"type": "BatchNorm2d", "num_features": m.num_features}
        elif isinstance(m, nn.Linear):
            out[name] = {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features,
                         "bias": m.bias is not None}
    return out


def resize_modules(net, shapes: dict) -> int:
    """Give every module named in `shapes` the saved sizes (empty parameters of the new shapes, to be
    loaded next). Returns how many modules changed. Raises EdgeftError for a module that is missing
    or of another type."""
    import torch
    import torch.nn as nn

    mods = dict(net.named_modules())
    changed = 0

    def param(*shape):
        return nn.Parameter(torch.empty(*shape))

    for name, s in shapes.items():
        m = mods.get(name)
        if m is None or not isinstance(m, getattr(nn, s["type"])):
            raise EdgeftError(f"config.json lists {s['type']} {name!r}, which the architecture does not have")
        if s["type"] == "Conv2d":
            if (m.in_channels, m.out_channels, m.groups) == (s["in_channels"], s["out_channels"], s["groups"]):
                continue
            kh, kw = m.kernel_size
            m.in_channels, m.out_channels, m.groups = s["in_channels"], s["out_channels"], s["groups"]
            m.weight = param(s["out_channels"], s["in_channels"] // s["groups"], kh, kw)
            if m.bias is not None:
                m.bias = param(s["out_channels"])
        elif s["type"] == "BatchNorm2d":
            n = s["num_features"]
            if m.num_features == n:
                continue
            m.num_features = n
            if m.affine:
                m.weight, m.bias = param(n), param(n)
            if m.track_running_stats:
                m.running_mean, m.running_var = torch.zeros(n), torch.ones(n)
        elif s["type"] == "Linear":
            if (m.in_features, m.out_features) == (s["in_features"], s["out_features"]):
                continue
            m.in_features, m.out_features = s["in_features"], s["out_features"]
            m.weight = param(s["out_features"], s["in_features"])
            if m.bias is not None:
                m.bias = param(s["out_features"])
        changed += 1
    return changed


# ----------------------------------------------------------------------------- loading


def is_cnn_folder(path) -> bool:
    p = Path(path) / "config.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def new_classifier(arch: str, weights_file: str | None, label_names: list[str], image_size: int):
    """A pretrained CNN with a new head for `label_names`, BatchNorm momentum set to 0.1."""
    import torch

    if arch not in ARCHS:
        raise EdgeftError(f"unknown CNN architecture {arch!r}; known: {', '.join(ARCHS)}")
    net = ARCHS[arch](len(label_names), image_size, weights_file)
    set_bn_momentum(net)
    torch.nn.init.normal_(classifier_module(net).weight, std=0.01)
    torch.nn.init.zeros_(classifier_module(net).bias)
    config = CNNConfig(arch, image_size, dict(enumerate(label_names)), module_shapes(net))
    return wrap(net, config)


def load_folder(folder, label_names: list[str] | None = None):
    """A classifier saved in edgeft's CNN folder format (safe loading). With `label_names` that differ
    from the saved classes, the head is replaced by a new one of that many classes."""
    import torch

    folder = Path(folder)
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise EdgeftError(f"{folder}: cannot read config.json: {e}") from None
    arch = raw.get("arch")
    if raw.get("format") != FORMAT or arch not in ARCHS:
        raise EdgeftError(f"{folder}: not an edgeft CNN folder (config.json needs format {FORMAT!r} and an arch "
                          f"of {', '.join(ARCHS)})")
    config = CNNConfig(arch, raw["image_size"], raw["id2label"], raw.get("modules"))
    net = ARCHS[arch](config.num_labels, config.image_size, None)
    resize_modules(net, config.modules)
    state = _read_state(folder)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EdgeftError(f"{folder}: weights do not match the architecture: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    set_bn_momentum(net)
    model = wrap(net, config)
    if label_names is not None and list(label_names) != [config.id2label[i] for i in range(config.num_labels)]:
        fc = classifier_module(net)
        new = torch.nn.Linear(fc.in_features, len(label_names))
        torch.nn.init.normal_(new.weight, std=0.01)
        torch.nn.init.zeros_(new.bias)
        _replace(net, fc, new)
        model.config = CNNConfig(arch, config.image_size, dict(enumerate(label_names)), module_shapes(net))
    model.eval()
    return model


def _read_state(folder: Path) -> dict:
    import torch

    if (folder / WEIGHTS).is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / WEIGHTS))
    for name in ("model.pt", "model.pth", "pytorch_model.bin"):
        if (folder / name).is_file():
            try:
                return torch.load(folder / name, map_location="cpu", weights_only=True)
            except Exception as e:   # weights_only refuses pickled code: say so instead of loading it
                raise EdgeftError(f"{folder / name}: not a plain state dict ({e})") from None
    raise EdgeftError(f"{folder}: no {WEIGHTS} (or model.pt) found")


def _replace(root, old, new) -> None:
    for _, m in root.named_modules():
        for child_name, child in m.named_children():
            if child is old:
                setattr(m, child_name, new)
                return
