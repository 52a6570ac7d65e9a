"""Image classification: image -> class logits (a CNN in edgeft's folder format, models/cnn.py).

The same preprocessing everywhere (training, calibration, export parity, benchmarks, memory
probes): `ImageProcessor` resizes every image to `image_size` x `image_size` (PIL, bilinear),
replicates grayscale to 3 channels, scales to [0, 1] and normalizes with the ImageNet mean and
std the pretrained weights expect. Inputs: `pixel_values`, float32 [batch, 3, size, size]; only the
batch axis is dynamic, so every image of a run has one shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NAME = "image-classification"
OUTPUT_NAMES = ["logits"]
FP32_TOLERANCE = 1e-4          # FP32 export against its source: |Δlogit| <= FP32_TOLERANCE + FP32_RTOL x the
FP32_RTOL = 1e-4               # sample's logit scale (max |logit|); summation order differs by CPU and runtime
QDQ_TOLERANCE = 1.0           # qat: max |Δlogit| of the QDQ export vs the QAT torch model (steps
#                              compound through ~50 quantized convolutions)
INPUT_AXES = {0: "batch"}      # spatial size is fixed by the recipe's data.image_size
DEFAULT_IMAGE_SIZE = 224
INPUT_NAME = "pixel_values"
GROUP_BY_LENGTH = False        # one shape: nothing to group
HIDDEN_STATE_KD = False        # distill: logits only
TRANSFORMER = False            # NNCF model type
# static INT8 (ONNX Runtime QDQ): convolutions, the classifier and the residual adds
STATIC_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add")
EXECUTORCH_INT8_MODULES = None            # XNNPACKQuantizer's global set: convolutions, linear, adds, pools
PROCESSOR_FILE = "preprocessor_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageProcessor:
    """Images (uint8 arrays HxW / HxWxC, or image file paths) -> normalized float32 CHW arrays."""

    model_input_names = [INPUT_NAME]

    def __init__(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.image_size = int(image_size)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def preprocess_one(self, item) -> np.ndarray:
        from PIL import Image

        from ..errors import DataError

        if isinstance(item, np.ndarray):
            arr = item
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            img = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8, copy=False)))
        else:
            try:
                with Image.open(item) as im:
                    img = im.convert("L") if im.mode in ("L", "I;16", "I", "1") else im.convert("RGB")
            except OSError as e:
                raise DataError(f"cannot read image {item}: {e}") from None
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        if img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = np.repeat(x[None], 3, axis=0) if x.ndim == 2 else x.transpose(2, 0, 1)
        return ((x - self.mean) / self.std).astype(np.float32)

    def __call__(self, items) -> dict[str, np.ndarray]:
        return {INPUT_NAME: np.stack([self.preprocess_one(x) for x in items])}

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "resize": "PIL bilinear to image_size x image_size",
                "grayscale": "replicated to 3 channels", "scale": "1/255",
                "mean": self.mean.ravel().tolist(), "std": self.std.ravel().tolist(), "input": INPUT_NAME,
                "layout": "NCHW float32"}

    def save_pretrained(self, folder) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / PROCESSOR_FILE).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_folder(cls, folder) -> ImageProcessor | None:
        p = Path(folder) / PROCESSOR_FILE
        if not p.is_file():
            return None
        d = json.loads(p.read_text())
        return cls(d["image_size"], d.get("mean", IMAGENET_MEAN), d.get("std", IMAGENET_STD))


# ----------------------------------------------------------------------------- data

def check_data(recipe) -> list[tuple[str, str]]:
    from ..data.images import check_image_data
    from ..models import check_source

    problems = check_image_data(recipe.data, recipe.base_dir)
    source = recipe.model.source
    reason = check_source(source, NAME)
    if reason:
        problems.append(("model.source", reason))
    elif not source.startswith("shipped:"):
        from ..models.cnn import is_cnn_folder

        if not is_cnn_folder(recipe.resolve_path(source)):
            problems.append(("model.source", f"{source} is not an edgeft CNN folder (config.json with "
                                             f"format edgeft-cnn/1 and model.safetensors)"))
    return problems


def load_splits(recipe):
    from ..data.images import load_image_splits

    return load_image_splits(recipe.data, recipe.seed, recipe.base_dir)


def image_size(data) -> int:
    return int(getattr(data, "image_size", None) or DEFAULT_IMAGE_SIZE)


# ----------------------------------------------------------------------------- model

def load_processor(model_dir: str | Path, data=None) -> ImageProcessor:
    """The recipe's preprocessing when `data` is given; else the one saved next to the model."""
    if data is not None:
        return ImageProcessor(image_size(data))
    saved = ImageProcessor.from_folder(model_dir) if Path(model_dir).is_dir() else None
    return saved or ImageProcessor(DEFAULT_IMAGE_SIZE)


def load_model(model_dir: str | Path, label_names: list[str] | None = None, data=None):
    """A torch classifier: an edgeft CNN folder, or (a shipped weights file) the pretrained CNN
    with a new head for `label_names`, built for the recipe's image size."""
    from ..errors import EdgeftError
    from ..models.cnn import load_folder, new_classifier

    p = Path(model_dir)
    if p.is_dir():
        model = load_folder(p, label_names)
    else:
        if label_names is None:
            raise EdgeftError(f"{model_dir}: a pretrained weights file needs the data's class names")
        from ..models.cnn import ARCHS

        arch = next((a for a in sorted(ARCHS, key=len, reverse=True) if p.name.startswith(a)), None)
        if arch is None:
            raise EdgeftError(f"{model_dir}: cannot tell the architecture from the weights file's name "
                              f"(known: {', '.join(ARCHS)})")
        model = new_classifier(arch, str(p), list(label_names), image_size(data))
    model.eval()
    return model


def encode(processor, items: list, max_length: int = 0, pad_to_max: bool = False) -> dict[str, np.ndarray]:
    """`pixel_values` [n, 3, size, size] float32. `max_length` and `pad_to_max` are text settings:
    images all have the processor's one shape."""
    return processor(list(items))


def input_names(processor) -> list[str]:
    return [INPUT_NAME]


def torch_forward(model, batch: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    return out.logits.float().numpy()


# ----------------------------------------------------------------------------- training

def training_examples(processor, split, data, augment=()):
    """A torch Dataset of {pixel_values, labels}; `augment` ("flip", "crop") applies to it only."""
    import torch

    class _Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(split)

        def __getitem__(self, i):
            x = torch.from_numpy(processor.preprocess_one(split.items[i]))
            if augment:
                x = augmented(x, augment)
            return {INPUT_NAME: x, "labels": int(split.labels[i])}

    return _Images()


def augmented(x, augment):
    """Random horizontal flip and/or random crop (zero padding of size/8 each side) of one CHW tensor
    (torch's global RNG, seeded by the Trainer)."""
    import torch

    if "flip" in augment and torch.rand(()) < 0.5:
        x = torch.flip(x, dims=[2])
    if "crop" in augment:
        s = x.shape[-1]
        pad = max(1, s // 8)
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
        x = padded[:, i:i + s, j:j + s]
    return x


def collator(processor):
    from transformers import default_data_collator

    return default_data_collator


def processor_key(processor, model_dir) -> str:
    """Artifacts whose processors share this key get the same encoded inputs (one preprocessing)."""
    return json.dumps(processor.to_dict(), sort_keys=True)


def example_lengths(processor, items, max_length: int) -> np.ndarray:
    """Per-example input size in the task's unit: one image each (they share one shape)."""
    return np.ones(len(items), dtype=np.int64)


def fixed_shape(data) -> list[int]:
    s = image_size(data)
    return [1, 3, s, s]


def dummy_inputs(names: list[str], batch: int, max_length: int, model_dir=None, seed: int = 0) -> dict:
    """Inputs of the run's one shape without data (memory probes, MAC counts)."""
    proc = load_processor(model_dir) if model_dir is not None else ImageProcessor(DEFAULT_IMAGE_SIZE)
    s = proc.image_size
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, 3, s, s)).astype(np.float32) for n in names}


# ----------------------------------------------------------------------------- metric

def metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": float(accuracy_score(labels, pred)),
            "f1": float(f1_score(labels, pred, average="macro"))}
