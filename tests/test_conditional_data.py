"""Labels for class-conditional training: the class-indexed MNIST source, class subfolders
(torchvision's ImageFolder layout), TFDS labels in memory and streamed from ArrayRecord
(the real tensorflow-datasets with ``tfds.testing.mock_data``), and the checks that stop a
run before any compute when data and model disagree on the classes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sagan_jax import data
from sagan_jax.runs import Trainer
from sagan_jax.train.config import ConfigError, base_config, validate


def test_mnist_source_labels_classes_by_position_in_digits():
  source = data.make_source({**base_config().data.to_dict(), "source": "mnist",
                             "digits": (7, 2), "per_digit": 3})
  assert source.class_names == ("7", "2")
  np.testing.assert_array_equal(source.labels, [0, 0, 0, 1, 1, 1])
  chapter = data.mnist_digits((7, 2), 3)  # same images, labelled by digit
  np.testing.assert_array_equal(source.get(np.arange(6)), chapter.get(np.arange(6)))
  np.testing.assert_array_equal(chapter.labels, [7, 7, 7, 2, 2, 2])
  batch = data.Batcher(source, 4, seed=0).batch(0)
  assert batch["label"].dtype == np.int32 and set(batch["label"]) <= {0, 1}


def _write_images(folder, names):
  folder.mkdir(parents=True, exist_ok=True)
  for name in names:
    Image.fromarray(np.full((5, 5), 200, np.uint8)).save(folder / name)


def test_image_folder_class_subfolders_are_sorted_labels(tmp_path):
  _write_images(tmp_path / "dog", ["a.png", "b.png"])
  _write_images(tmp_path / "cat", ["c.png"])
  _write_images(tmp_path / "cat" / "deeper", ["d.png"])  # recursive, as ImageFolder
  _write_images(tmp_path, ["root.png"])  # not in a class folder: not an example
  source = data.image_folder(tmp_path, 8, 1, class_folders=True)
  assert source.class_names == ("cat", "dog")
  assert [p.name for p in source.files] == ["c.png", "d.png", "a.png", "b.png"]
  np.testing.assert_array_equal(source.labels, [0, 0, 1, 1])
  assert "2 classes by subfolder (0=cat, 1=dog)" in source.description
  assert data.image_folder(tmp_path, 8, 1).labels is None  # the chapter's flat layout
  _write_images(tmp_path / "empty_class", [])
  with pytest.raises(data.DataError, match="empty_class holds no image files"):
    data.image_folder(tmp_path, 8, 1, class_folders=True)
  flat = tmp_path / "flat"
  _write_images(flat, ["x.png"])
  with pytest.raises(data.DataError, match="no class subfolders"):
    data.image_folder(flat, 8, 1, class_folders=True)


def test_label_checks_name_the_problem():
  source = data.mnist_classes(range(10), 2, image_size=32)
  data.check_class_labels(source, 10)
  with pytest.raises(data.DataError, match="10 classes but the model 3"):
    data.check_class_labels(source, 3)
  digits = data.mnist_digits((7, 8), 2)  # labels are the digits 7, 8
  with pytest.raises(data.DataError, match=r"label 7 \(example 0\) is outside \[0, 2\)"):
    data.check_class_labels(digits, 2)
  with pytest.raises(data.DataError, match="no labels"):
    data.check_class_labels(data.ArraySource(np.zeros((2, 4, 4, 1), np.uint8), "x"), 2)


def _resnet_config(**model):
  config = base_config()
  config.data.update(source="mnist", digits=tuple(range(10)), per_digit=4, image_size=32)
  config.model.update({"name": "resnet", "num_classes": 10, "width": 8, "d_width": 4,
                       "g_attention": (16,), "d_attention": (16,), **model})
  config.batching.batch_size = 8
  return config


def test_class_count_mismatch_is_a_config_error_before_compute():
  with pytest.raises(ConfigError, match="the data has 10 classes but the model 7"):
    Trainer(_resnet_config(num_classes=7))
  config = _resnet_config(num_classes=2)
  config.data.source = "mnist78"  # labelled by digit, no class count declared
  config.data.digits = (7, 8)
  with pytest.raises(ConfigError, match=r"label 7 .* outside \[0, 2\)"):
    Trainer(config)


@pytest.mark.parametrize("field, value, message", [
    ("model.num_classes", 0, "num_classes must be None"),
    ("model.weight_init", "he", "weight_init must be one of"),
    ("model.bn_style", "flax", "bn_style must be one of"),
    ("model.g_attention", (24,), "G has no 24×24 features"),
    ("model.d_attention", (16, 4), "D has no 4×4 features"),
    ("ema.decay", 1.5, "ema.decay must be None"),
    ("optimizer.d_steps", 0, "d_steps must be a positive integer"),
])
def test_resnet_config_errors(field, value, message):
  config = _resnet_config()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=message):
    validate(config)


def test_d_steps_need_equal_batches():
  config = _resnet_config()
  config.optimizer.d_steps = 2
  with pytest.raises(ConfigError, match="drop_remainder=True"):
    validate(config)
  config.batching.drop_remainder = True
  validate(config)


def test_attention_needs_channels_divisible_by_8():
  config = _resnet_config(width=1)  # G has 4 channels at 16×16
  with pytest.raises(ConfigError, match="divisible by 8, G has 4"):
    validate(config)


# --- TFDS: the real tensorflow-datasets, mock data -------------------------------------


def test_tfds_stream_reads_labelled_batches_by_index():
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("array_record")
  with tfds.testing.mock_data(num_examples=12):
    source = data.make_source({**base_config().data.to_dict(), "source": "tfds_stream",
                               "tfds_name": "cifar10", "image_size": 16, "channels": 3})
    assert len(source) == 12 and source.class_names == tuple(str(i) for i in range(10))
    assert "ArrayRecord" in source.description
    images, labels = source.get_labeled([3, 0, 3])
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], images[2])
    assert labels.dtype == np.int32 and labels[0] == labels[2] and 0 <= labels.min()
    # The example itself, resized as every source resizes.
    example = tfds.data_source("cifar10", split="train")[3]
    expected = data.transforms.pil_to_array(Image.fromarray(example["image"]), 16, 3)
    np.testing.assert_array_equal(images[0], expected)
    assert labels[0] == int(example["label"])
    batcher = data.Batcher(source, 4, seed=1, process_index=1, process_count=2)
    batch = batcher.batch(5)  # this process's half of a global batch
    assert batch["image"].shape == (2, 16, 16, 3) and batch["label"].shape == (2,)
    data.check_class_labels(source, 10)
    with pytest.raises(data.DataError, match="10 classes but the model 3"):
      data.check_class_labels(source, 3)


def test_tfds_stream_errors_are_one_line():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=2):
    with pytest.raises(data.DataError, match="no feature 'picture'"):
      data.tfds_stream("cifar10", image_size=8, channels=3, image_key="picture")
  with pytest.raises(data.DataError, match="no tfds dataset 'no_such_dataset_xyz'"):
    data.tfds_stream("no_such_dataset_xyz", image_size=8, channels=3)


def test_tfds_in_memory_keeps_labels_and_class_names():
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("tensorflow")  # the in-memory path reads through tf.data
  with tfds.testing.mock_data(num_examples=6):
    source = data.tfds_dataset("cifar10", "train", image_size=8, channels=3)
  assert source.labels.shape == (6,) and source.class_names == tuple(str(i) for i in range(10))
  data.check_class_labels(source, 10)
