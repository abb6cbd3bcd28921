"""``SpectralNorm(layer)``: spectral normalization of any Flax layer's weights, as PyTorch does it.

``SpectralNorm(nn.Dense(64))`` divides the wrapped layer's ``kernel`` by its
largest singular value exactly as ``torch.nn.utils.spectral_norm`` does (the
math of :mod:`sagan_jax.layers.spectral_norm`): ``u`` and ``v`` are both kept,
start as random unit vectors with no iteration at ``init``, a train-mode call
(``update_stats=True``) runs the power iteration and stores them, and an
eval-mode call runs no iteration — it divides by ``σ = u·(W v)`` from the
stored vectors and the current weight, differentiably in the weight. It works
on any layer whose parameters are named ``kernel`` (Flax's ``Dense``,
``Conv``, ``ConvTranspose``, ``DenseGeneral``, this package's layers) or
``embedding`` (``Embed``), at any depth inside the wrapped module.

How it differs from ``flax.linen.SpectralNorm`` (same constructor pattern):

* Flax keeps only ``u`` and iterates on every call, train or eval, from the
  stored ``u`` (eval just does not store the result), so evaluating changes
  nothing but still is not the stored estimate; here eval uses the stored
  ``u``, ``v`` with no iteration, like PyTorch's ``module.eval()``.
* Flax normalizes every ≥ 2-D parameter of the layer and treats the last axis
  as the output; here the named weights, with PyTorch's output axis (an
  embedding table's rows).
* Flax's normalization is ``x·rsqrt(Σx² + eps)`` and its ``u`` starts
  unnormalized and is iterated at ``init``; here ``x / max(‖x‖, eps)`` and unit
  vectors at ``init``, so the first train step matches PyTorch's.
* Flax stores its state in ``batch_stats`` by default; here ``spectral`` (the
  collection this package's trainer updates), configurable.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
from flax import traverse_util

from sagan_jax.layers.spectral_norm import DEFAULT_EPS, SPECTRAL, spectral_normalized

# (weight name, its output axis): the rows of the matrix whose norm is taken, as
# torch.nn.utils.spectral_norm picks them: last for Flax kernels (Dense (in, out), Conv and
# ConvTranspose (..., in, out)), the rows of an embedding table.
DEFAULT_WEIGHTS = (("kernel", -1), ("embedding", 0))


class SpectralNorm(nn.Module):
  """Wraps ``layer_instance``; its weights are spectrally normalized on every call.

  Call it as the wrapped layer, plus ``update_stats``: ``SpectralNorm(nn.Dense(8))(x,
  update_stats=True)`` (train: one power-iteration round, needs
  ``mutable=[collection_name]``) or ``update_stats=False`` (eval). The state of a
  weight at path ``a/b/kernel`` is ``a/b/kernel/u``, ``…/v`` and ``…/sigma`` in
  ``collection_name``, under this module's name.

  Attributes:
    layer_instance: the Flax module to wrap.
    num_power_iterations: rounds per train-mode call (PyTorch's ``n_power_iterations``).
    eps: the normalization floor (PyTorch's ``eps``).
    collection_name: where ``u``, ``v``, ``sigma`` live.
    weights: (parameter name, output axis) pairs; other parameters are left alone.
    update_stats: train mode; may also be given at call time.
  """

  layer_instance: nn.Module
  num_power_iterations: int = 1
  eps: float = DEFAULT_EPS
  collection_name: str = SPECTRAL
  weights: tuple[tuple[str, int], ...] = DEFAULT_WEIGHTS
  update_stats: Optional[bool] = None

  @nn.compact
  def __call__(self, *args, update_stats: Optional[bool] = None, **kwargs):
    update = nn.merge_param("update_stats", self.update_stats, update_stats)
    out_axes = dict(self.weights)

    def normalize(variables):  # {"params": the wrapped layer's parameters}
      flat = traverse_util.flatten_dict(variables["params"], sep="/")
      for path, weight in flat.items():
        name = path.rsplit("/", 1)[-1]
        if name in out_axes and weight.ndim >= 2:
          flat[path] = spectral_normalized(
              self, weight, update_stats=update, out_axis=out_axes[name],
              num_iterations=self.num_power_iterations, eps=self.eps,
              collection=self.collection_name, prefix=path + "/")
      return {"params": traverse_util.unflatten_dict(flat, sep="/")}

    def forward(layer):
      return layer(*args, **kwargs)

    return nn.map_variables(forward, "params", trans_in_fn=normalize,
                            init=self.is_initializing(), mutable=True)(self.layer_instance)
