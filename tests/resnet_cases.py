"""The ResNet SAGAN cases the PyTorch fixtures were made for (tests/reference/cases.py), and
our models built as StudioGAN builds them: shared by the parity, export and file tests."""

from __future__ import annotations

from sagan_jax.models import ResNetDiscriminator, ResNetGenerator
from sagan_jax.models.resnet import discriminator_stages

Z_DIM = 16
# fixture case -> the models' shape, as cases.py's CASES
MODEL_CASES = {
    "resnet_models": dict(resolution=32, width=4, num_classes=3, attention=(2, 1)),
    "resnet_models_uncond64": dict(resolution=64, width=4, num_classes=None, attention=(3, 2)),
    "resnet_models_cond128": dict(resolution=128, width=2, num_classes=3, attention=(3, 3)),
}


def studiogan_models(resolution: int, width: int, num_classes, attention, channels: int = 3,
                     z_dim: int = Z_DIM):
  """Our G and D built as StudioGAN's SAGAN (its ``attn_g_loc``/``attn_d_loc`` =
  ``attention``: after G's block k the features are 4·2^k wide), its D's shortcuts after
  the activation."""
  g_size = 4 * 2 ** attention[0]
  d_size = [s for s in discriminator_stages(resolution, ()) if not s.is_attention][
      attention[1] - 1].size
  common = dict(resolution=resolution, channels=channels, num_classes=num_classes,
                weight_init="orthogonal", spectral_eps=1e-6)
  return (ResNetGenerator(z_dim=z_dim, width=width, attention=(g_size,), bn_style="studiogan",
                          cbn_spectral_norm=True, **common),
          ResNetDiscriminator(width=width, attention=(d_size,), shortcut_after_activation=True,
                              **common))
