"""Random FID Inception weights with the real file's key names, and test images (numpy only).

The parity tests never need pytorch-fid's 91 MiB weight file: `random_state_dict` draws
weights of the same keys and shapes from a NumPy seed (bit-identical on every machine), and
both pytorch-fid (in `make_fixtures.py` and the live cross-check) and sagan-jax load them.
"""

from __future__ import annotations

import numpy as np

from sagan_jax.eval.inception_weights import torch_shapes

# The committed fixture's weights and images.
SEED = 0


def random_state_dict(seed: int) -> dict[str, np.ndarray]:
  """A pytorch-fid ``state_dict`` (PyTorch layouts, float32; ``num_batches_tracked`` int64).

  He-normal convolution weights and BatchNorm statistics near the identity
  keep the activations O(1) through the 94 convolutions, so pool3 and the
  logits are far from zero and the softmax is neither one-hot nor uniform:
  the comparison exercises every layer.
  """
  rng = np.random.default_rng(seed)
  out: dict[str, np.ndarray] = {}
  for key, shape in torch_shapes().items():
    if key.endswith(".conv.weight"):
      fan_in = int(np.prod(shape[1:]))
      value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif key.endswith(".bn.weight"):
      value = rng.uniform(0.8, 1.2, shape)
    elif key.endswith(".bn.bias") or key.endswith(".bn.running_mean"):
      value = rng.normal(0.0, 0.1, shape)
    elif key.endswith(".bn.running_var"):
      value = rng.uniform(0.7, 1.3, shape)
    elif key == "fc.weight":
      value = rng.standard_normal(shape) * (2.0 / np.sqrt(shape[1]))
    elif key == "fc.bias":
      value = rng.normal(0.0, 0.5, shape)
    else:
      raise AssertionError(f"no rule for {key}")
    out[key] = value.astype(np.float32)
    if key.endswith(".bn.running_var"):
      out[key[:-len("running_var")] + "num_batches_tracked"] = np.asarray(0, np.int64)
  return out


def images(seed: int, count: int, size: int) -> np.ndarray:
  """uint8 (count, size, size, 3): smooth colour gradients plus noise (image-like, varied)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
  out = np.empty((count, size, size, 3), np.uint8)
  for i in range(count):
    a, b, c = rng.uniform(-1, 1, (3, 3))
    phase = a[:, None, None] * yy + b[:, None, None] * xx
    smooth = 0.5 + 0.4 * np.sin(3 * phase + c[:, None, None])
    noisy = smooth.transpose(1, 2, 0) + rng.normal(0, 0.15, (size, size, 3))
    out[i] = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
  return out
