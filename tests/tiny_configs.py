"""The test suite's run configs: configs/tiny.py made smaller, with overrides.

``tiny_config()`` is the one the in-process runs share (test_train_loop.py and
the files beside it, test_multi_device.py, test_evaluate.py, the multi-process
worker); ``tiny_resnet_config()`` is the paper's ResNet SAGAN at the same size.
"""

from __future__ import annotations

import importlib.util

import ml_collections

from tests import ROOT


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """configs/tiny.py with 16 images (2 steps per epoch) and 4 steps.

  Overrides use ``__`` for a dot: ``tiny_config(data__per_digit=200, num_steps=2)``.
  """
  spec = importlib.util.spec_from_file_location("tiny_config", ROOT / "configs" / "tiny.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.per_digit = 8
  config.num_steps = 4
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split("__")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def tiny_resnet_config() -> ml_collections.ConfigDict:
  """The paper's ResNet SAGAN, class-conditional, at 32 px and tiny widths (G 32, D 8
  channels), with everything the ResNet recipe adds: 2 D steps per G step (each on its
  own batch of 8 of the 20 digits), the generator's EMA (a copy at step 1, then
  decay 0.5), StudioGAN's cBN with spectral norm."""
  config = tiny_config(batching__batch_size=8, batching__drop_remainder=True)
  config.data.update(source="mnist", digits=tuple(range(10)), per_digit=2, image_size=32)
  config.model.update(name="resnet", num_classes=10, z_dim=16, width=8, d_width=4,
                      g_attention=(16,), d_attention=(16,), weight_init="orthogonal",
                      bn_style="studiogan", cbn_spectral_norm=True, spectral_eps=1e-6)
  config.optimizer.d_steps = 2
  config.ema.update(decay=0.5, start_step=1)
  return config
