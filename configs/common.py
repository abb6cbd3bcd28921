"""Recipes the ResNet configs share: the paper's class-conditional ResNet SAGAN, built the
way StudioGAN builds it (``style='studiogan'``) or the way the authors' released TF code
does (``style='official'``), and the Adam settings of a recipe.

A config starts from ``base_config()`` and calls these (big_vision's ``configs/common.py``
habit), then sets what is its own: data, batch size, length and cadence. Configs import it as
``configs.common``: the repository's root is on ``sys.path`` when train.py, sample.py or
evaluate.py runs (their folder) and under pytest.
"""

from typing import Optional

# What each implementation builds, beyond the shared layout (sagan_jax/models/resnet.py).
STYLES = {
    # StudioGAN (src/config.py, src/models/resnet.py): orthogonal init; conditional BN as
    # gain 1 + SN linear with eps 1e-4; spectral norm's power iteration floored at 1e-6.
    "studiogan": dict(weight_init="orthogonal", bn_style="studiogan", cbn_spectral_norm=True,
                      spectral_eps=1e-6),
    # The released TF code: Xavier init; per-class γ, β tables with moving averages (decay
    # 0.999) and no spectral norm on them; the power iteration's floor stays 1e-12.
    "official": dict(weight_init="xavier", bn_style="official", cbn_spectral_norm=False),
}


def resnet_sagan(config, *, resolution: int, num_classes: int, attention: int,
                 style: str, width: int = 64, d_width: int = 64):
  """Sets ``config`` to the class-conditional ResNet SAGAN at ``resolution`` px.

  Args:
    config: a ``base_config()``, changed in place.
    resolution: the image size (``data.image_size``): 32 or 128.
    num_classes: the classes of the conditional G (cBN) and projection D.
    attention: the feature resolution that self-attention follows, in G and in D.
    style: a key of `STYLES`: whose implementation details to follow.
    width: G's channel unit (``g_conv_dim``); d_width: D's (``d_conv_dim``).

  Returns:
    ``config``.
  """
  config.data.image_size = resolution
  config.model.name = "resnet"
  config.model.num_classes = num_classes
  config.model.z_dim = 128
  config.model.width = width
  config.model.d_width = d_width
  config.model.g_attention = (attention,)
  config.model.d_attention = (attention,)
  for field, value in STYLES[style].items():
    config.model[field] = value
  config.loss = "hinge"
  # One batch shape to compile; needed anyway when D takes several batches per step.
  config.batching.drop_remainder = True
  return config


def adam(config, *, lr_g: float, lr_d: float, betas: tuple[float, float],
         eps: Optional[float] = None, d_steps: int = 1):
  """Sets ``config.optimizer``: Adam with ``betas`` and the two learning rates; ``eps``
  None keeps the default (optax's 1e-8); ``d_steps`` D updates per G update."""
  config.optimizer.lr_g = lr_g
  config.optimizer.lr_d = lr_d
  config.optimizer.b1, config.optimizer.b2 = betas
  if eps is not None:
    config.optimizer.eps = eps
  config.optimizer.d_steps = d_steps
  return config
