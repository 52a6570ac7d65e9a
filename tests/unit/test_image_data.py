"""Image data and recipe checks: Fashion-MNIST's official split, users' image folders (string class
names, train/validation/test folders or split fractions), clear errors for empty or unreadable
images, the one preprocessing, and task settings rejected for the other task at load time."""

from __future__ import annotations

import numpy as np
import pytest

from edgeft.data.images import FASHION_MNIST_CLASSES, fashion_mnist_dir, load_fashion_mnist, load_image_splits
from edgeft.errors import DataError, RecipeError
from edgeft.recipe import DataConfig, validate_recipe
from tests.conftest import small_recipe


@pytest.fixture(scope="module")
def fmnist():
    if not (fashion_mnist_dir() / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed in {fashion_mnist_dir()}: "
                    f"apt-get update && apt-get install -y dataset-fashion-mnist (make setup does it as root)")
    return load_fashion_mnist(0.1, seed=0)


def image_recipe(**over) -> dict:
    r = {"name": "tiny-img", "seed": 0, "task": "image-classification",
         "model": {"source": "shipped:efficientnet-lite0"},
         "data": {"source": "builtin:fashion_mnist", "image_size": 32,
                  "max_samples": {"train": 300, "validation": 100, "test": 100}},
         "stages": [{"name": "finetune", "type": "finetune", "epochs": 1}]}
    r.update(over)
    return r


def test_fashion_mnist_official_split_and_validation_from_train(fmnist):
    s = fmnist
    assert s.sizes() == {"train": 54000, "validation": 6000, "test": 10000}
    assert s.label_names == FASHION_MNIST_CLASSES and s.label_names[9] == "Ankle boot"
    assert s.train.items[0].shape == (28, 28) and s.train.items[0].dtype == np.uint8
    assert np.bincount(s.test.labels).tolist() == [1000] * 10          # the official test set is balanced
    train_bytes = {x.tobytes() for x in s.train.items[:5000]}
    assert not any(x.tobytes() in train_bytes for x in s.validation.items)   # validation is carved out of train
    again, other = load_fashion_mnist(0.1, seed=0), load_fashion_mnist(0.1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again.validation.items[:50], s.validation.items[:50]))
    assert not all(np.array_equal(a, b) for a, b in zip(other.validation.items[:50], s.validation.items[:50]))


def test_preprocessing_resizes_replicates_gray_and_normalizes(fmnist):
    from edgeft.tasks import image_classification as task

    proc = task.ImageProcessor(40)
    x = task.encode(proc, fmnist.test.items[:3])["pixel_values"]
    assert x.shape == (3, 3, 40, 40) and x.dtype == np.float32
    # gray replicated: the channels differ only by the per-channel normalization
    un = x * proc.std[None] + proc.mean[None]
    assert np.allclose(un[:, 0], un[:, 1], atol=1e-5) and np.allclose(un[:, 1], un[:, 2], atol=1e-5)
    assert 0.0 <= un.min() and un.max() <= 1.0 + 1e-5
    assert not np.allclose(x[0], x[1])


def _write_pngs(root, images, labels, names, per_class):
    from PIL import Image

    count = {n: 0 for n in names}
    for img, y in zip(images, labels):
        name = names[int(y)]
        if count[name] >= per_class:
            continue
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"img{count[name]:03d}.png")
        count[name] += 1


def test_image_folders_with_string_class_names(tmp_path, fmnist):
    from edgeft.tasks import image_classification as task

    names = {0: "tshirt", 1: "trouser", 9: "boot"}
    keep = [i for i, y in enumerate(fmnist.test.labels) if int(y) in names][:240]
    imgs = [fmnist.test.items[i] for i in keep]
    labels = [list(names).index(int(fmnist.test.labels[i])) for i in keep]
    for split, (lo, hi), per in (("train", (0, 120), 30), ("val", (120, 180), 6), ("test", (180, 240), 8)):
        _write_pngs(tmp_path / "ds" / split, imgs[lo:hi], labels[lo:hi], list(names.values()), per)
    s = load_image_splits(DataConfig(source="ds", image_size=32), seed=0, base_dir=tmp_path)
    assert s.label_names == ["boot", "trouser", "tshirt"]               # folder names, sorted
    assert s.sizes() == {"train": 90, "validation": 18, "test": 24}
    assert sorted(set(s.train.labels.tolist())) == [0, 1, 2]
    x = task.encode(task.ImageProcessor(32), s.test.items[:4])["pixel_values"]
    assert x.shape == (4, 3, 32, 32)
    # one folder of class folders, split by fractions per class (seeded)
    flat = load_image_splits(DataConfig(source="ds/train", image_size=32, split={"validation": 0.2, "test": 0.2}),
                             seed=0, base_dir=tmp_path)
    assert flat.sizes() == {"train": 54, "validation": 18, "test": 18}
    assert flat.label_names == ["boot", "trouser", "tshirt"]
    assert not set(flat.train.items) & set(flat.test.items)


def test_empty_or_unreadable_image_is_a_clear_error(tmp_path, fmnist):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = tmp_path / "ds" / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(fmnist.train.items[i]).save(d / f"{i}.png")
    cfg = DataConfig(source="ds", image_size=32)
    assert load_image_splits(cfg, seed=0, base_dir=tmp_path).label_names == ["a", "b"]
    empty = tmp_path / "ds" / "train" / "b" / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png: image file is empty"):
        load_image_splits(cfg, seed=0, base_dir=tmp_path)
    empty.unlink()
    broken = tmp_path / "ds" / "test" / "a" / "broken.jpg"
    broken.write_bytes(b"this is not an image" * 10)
    with pytest.raises(DataError, match=r"broken\.jpg: cannot read image"):
        load_image_splits(cfg, seed=0, base_dir=tmp_path)


def test_calibration_hash_covers_pixels(fmnist):
    from edgeft.calibration import samples_hash

    a = [x.copy() for x in fmnist.train.items[:4]]
    h = samples_hash(a)
    a[2][5, 5] ^= 1
    assert samples_hash(a) != h and samples_hash(fmnist.train.items[:4]) == h


def _problems(raw) -> list[str]:
    with pytest.raises(RecipeError) as e:
        validate_recipe(raw, check_data=False)
    return [f"{p}: {r}" for p, r in e.value.problems]


def test_text_settings_are_rejected_for_image_task_and_back():
    raw = image_recipe()
    raw["data"] = {**raw["data"], "max_length": 64}
    raw["stages"] = [{"name": "finetune", "type": "finetune", "group_by_length": False},
                     {"name": "prune", "type": "prune", "heads": 0.5},
                     {"name": "distill", "type": "distill", "teacher": "@finetune", "beta": 0.5}]
    got = "\n".join(_problems(raw))
    for expected in ("data.max_length: a text-classification setting", "stages[0].group_by_length",
                     "stages[1].heads: a text-classification", "stages[1].channels: prunes nothing",
                     "stages[2].beta: image tasks distill logits only"):
        assert expected in got
    text = small_recipe(data={"source": "builtin:rotten_tomatoes", "image_size": 64},
                        stages=[{"name": "finetune", "type": "finetune", "augment": ["flip"]},
                                {"name": "prune", "type": "prune", "heads": 0.5, "channels": 0.3}])
    got = "\n".join(_problems(text))
    for expected in ("data.image_size: an image-classification setting", "stages[0].augment",
                     "stages[1].channels: an image-classification (CNN) setting"):
        assert expected in got
    wrong_model = small_recipe(model={"source": "shipped:efficientnet-lite0"})
    with pytest.raises(RecipeError, match="is a model for image-classification"):
        validate_recipe(wrong_model)


def test_image_recipe_in_repo_validates_and_keeps_text_cache_keys():
    from edgeft.recipe import load_recipe
    from edgeft.stages.finetune import FinetuneConfig

    r = load_recipe("recipes/efficientnet-lite0-fashion-mnist.yaml")
    assert r.task == "image-classification" and r.data.image_size == 64
    # keys that text recipes never set stay out of their cache keys
    assert "augment" not in FinetuneConfig(name="f", type="finetune").key_config()
    assert "image_size" not in validate_recipe(small_recipe()).context_fields()["data"]
