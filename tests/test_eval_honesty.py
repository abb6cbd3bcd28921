"""A classifier reading never stands alone: flat grey samples, which the digit classifier
reads as an 8 more confidently than it reads real digits, are flagged as collapsed, with
per-class recall and the spread that show why; real digits are not."""

from __future__ import annotations

import numpy as np
import pytest

from sagan_jax.eval import format_table, scalars
from sagan_jax.runs import make_evaluator
from sagan_jax.train.config import base_config


@pytest.fixture(scope="module")
def evaluator():
  return make_evaluator(base_config(), kid_subsets=2, kid_subset_size=100, splits=2)


def _batches(images, size=100):
  return [images[i:i + size] for i in range(0, len(images), size)]


def test_flat_grey_samples_are_flagged_collapsed(evaluator):
  grey = np.full((300, 64, 64, 1), -0.25, np.float32)  # one mid-grey image, 300 times
  result = evaluator.evaluate(_batches(grey))
  assert result["collapsed"], result
  assert result["spread_ratio"] < 1e-6  # every sample the same point
  assert all(result[f"recall_{c}"] < 0.1 for c in (7, 8))
  assert any("spread" in reason for reason in result["collapse_reasons"])
  table = format_table({**result, "step": 4})
  assert "COLLAPSED OUTPUT" in table and "recall of the 7s" in table
  assert scalars(result)["eval/collapsed"] == 1.0
  assert result["real"]["collapsed"] is False  # the floor is real digits


def test_real_digits_are_not_flagged(evaluator):
  real = evaluator.real.images
  result = evaluator.evaluate(_batches(real[::-1]))
  assert not result["collapsed"], result["collapse_reasons"]
  assert 0.8 < result["spread_ratio"] < 1.25
  assert all(result[f"recall_{c}"] > 0.5 for c in (7, 8))
  assert "COLLAPSED" not in format_table({**result, "step": 4})


def test_one_class_only_is_flagged_missing(evaluator):
  real = evaluator.real
  sevens = real.images[np.asarray(real.labels) == 7]
  result = evaluator.evaluate(_batches(sevens))
  assert result["collapsed"]
  assert result["recall_8"] < 0.1 <= result["recall_7"]
  assert any("8s" in reason for reason in result["collapse_reasons"])
