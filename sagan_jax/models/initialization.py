"""Weight initialization schemes by name, as the SAGAN implementations use them.

* ``xavier``: Glorot-uniform kernels and embeddings, zero biases — the SAGAN
  paper's released TF code (``tf.contrib.layers.xavier_initializer``) and
  BigGAN-PyTorch's SAGAN recipe; StudioGAN's ``"glorot"``/``"xavier"``.
* ``orthogonal``: orthogonal kernels and embeddings, zero biases — StudioGAN's
  default (``"ortho"``, ``torch.nn.init.orthogonal_``) and BigGAN's.
* ``pytorch``: PyTorch's own defaults — ``U(±1/√fan_in)`` kernels and biases,
  N(0, 1) embeddings (a StudioGAN model built with ``d_init=False``).

Glorot and orthogonal draws here have the same distribution as PyTorch's
(same fans, same orthogonality of the ``(out, in·kh·kw)`` matrix); the
numbers differ, since the random streams do.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import flax.linen as nn

Initializer = Callable[..., object]


class InitScheme(NamedTuple):
  """Initializers for a model's layers; ``None`` keeps the layer's PyTorch default."""
  kernel: Optional[Initializer]  # conv and dense kernels (and the cBN class tables)
  bias: Optional[Initializer]
  embedding: Initializer  # class embeddings (the projection discriminator's)


INIT_SCHEMES: dict[str, InitScheme] = {
    "xavier": InitScheme(nn.initializers.xavier_uniform(), nn.initializers.zeros,
                         nn.initializers.xavier_uniform()),
    "orthogonal": InitScheme(nn.initializers.orthogonal(), nn.initializers.zeros,
                             nn.initializers.orthogonal()),
    "pytorch": InitScheme(None, None, nn.initializers.normal(stddev=1.0)),
}
INIT_NAMES = tuple(INIT_SCHEMES)


def init_scheme(name: str) -> InitScheme:
  """The scheme called ``name`` (a ``ValueError`` lists the valid names)."""
  try:
    return INIT_SCHEMES[name]
  except KeyError:
    raise ValueError(f"unknown init scheme {name!r}; valid: {list(INIT_NAMES)}") from None
