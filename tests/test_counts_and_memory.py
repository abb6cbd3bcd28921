"""Counts a user gives, and what they cost.

* ``sample.py``/``evaluate.py`` check every count first — before a checkpoint
  is read — and evaluation asks for what its metrics need (precision/recall's
  k-NN needs k + 1 samples), not just "≥ 2".
* The trainer logs the batch it really uses: a ``batch_size`` larger than the
  data gives batches of the whole data set (``drop_remainder`` refuses it).
* Sampling streams: the generator sees at most ``batch_size`` latents a call,
  and attention maps are computed only with ``attention=True``, for the 4
  samples the figure shows — so memory does not grow with ``num_samples``
  beyond the images themselves.
"""

from __future__ import annotations

import pytest

from sagan_jax import data as data_lib
from sagan_jax.data import DataError
from sagan_jax.eval import EvalError
from sagan_jax.runs import evaluate_run, sampling, write_sample_files
from sagan_jax.runs import training as loop
from sagan_jax.runs.errors import ArgumentError
from sagan_jax.train.config import ConfigError
from tests.tiny_configs import tiny_config

pytestmark = pytest.mark.usefixtures("one_device_with_compilation_cache")


@pytest.fixture
def no_restore(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("a checkpoint was read before the error")

  monkeypatch.setattr(sampling, "restore_generator", refuse)
  monkeypatch.setattr(loop.evaluation, "restore_generator", refuse)


@pytest.mark.parametrize("options, message", [
    ({"num_samples": 0}, "num_samples must be a positive integer, got 0"),
    ({"num_samples": -1}, "num_samples must be a positive integer, got -1"),
    ({"num_samples": 2.5}, "num_samples must be a positive integer, got 2.5"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"step": -2}, "step must be an integer >= 0, got -2"),
])
def test_sample_counts_are_checked_first(tmp_path, no_restore, options, message):
  with pytest.raises(ArgumentError, match=f"^{message}$"):
    write_sample_files(str(tmp_path), **options)


@pytest.mark.parametrize("options, message", [
    ({"num_samples": 2, "batch_size": 2}, r"num_samples must be an integer >= 4, got 2 "
                                          r"\(precision/recall .* k=3\)"),
    ({"num_samples": 4, "k": 4}, r"num_samples must be an integer >= 5, got 4"),
    ({"num_samples": 10, "batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"num_samples": 10, "seed": -3}, r"seed must be an integer >= 0, got -3"),
])
def test_evaluation_counts_are_checked_first(tmp_path, no_restore, options, message):
  with pytest.raises(EvalError, match=message):
    evaluate_run(str(tmp_path), **options)


def test_eval_during_training_needs_enough_samples_too():
  with pytest.raises(ConfigError, match=r"config\.eval\.num_samples must be at least 4 "
                                        r"\(precision/recall's k-NN\), got 3"):
    loop.Trainer(tiny_config(eval__every=2, eval__num_samples=3))


def test_the_trainer_logs_the_batch_it_really_uses():
  source = data_lib.make_source(tiny_config().data)  # 16 images
  describe = lambda batch_size: loop._batch_description(data_lib.Batcher(source, batch_size))
  assert describe(8) == "batch 8"
  assert describe(6) == "batch 6 (the last of each epoch 4)"
  assert describe(1000) == "batch 16 (all 16 images: batch_size 1000 is larger than the data)"
  with pytest.raises(DataError, match="drop_remainder=True with 16 examples < batch_size 1000"):
    data_lib.Batcher(source, 1000, drop_remainder=True)


@pytest.mark.parametrize("attention", [False, True])
def test_sampling_streams_and_computes_maps_only_when_asked(finished_run, tmp_path, monkeypatch,
                                                            attention):
  workdir, _, _ = finished_run
  calls = []  # (return_attention, latents in the call)
  sample = sampling.Sampler.__init__

  def recording_init(self, generator, z_dim, **kwargs):
    sample(self, generator, z_dim, **kwargs)
    jitted_sample, jitted_generate = self._sample, self._generate

    def recording_sample(variables, seed, indices, labels):
      calls.append((self.return_attention, int(indices.shape[0])))
      return jitted_sample(variables, seed, indices, labels)

    def recording_generate(variables, z, labels):  # given latents: the figure's samples
      calls.append((self.return_attention, int(z.shape[0])))
      return jitted_generate(variables, z, labels)

    self._sample, self._generate = recording_sample, recording_generate

  monkeypatch.setattr(sampling.Sampler, "__init__", recording_init)
  paths = write_sample_files(str(workdir), num_samples=100, out=str(tmp_path / "grid.png"),
                             attention=attention, batch_size=32)
  assert [c for c in calls if not c[0]] == [(False, 32)] * 4  # 32, 32, 32, 4 padded to 32
  maps = [c for c in calls if c[0]]
  assert maps == ([(True, sampling.ATTENTION_FIGURE_SAMPLES)] if attention else [])
  assert len(paths) == 1 + attention
