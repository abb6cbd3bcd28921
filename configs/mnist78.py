"""The chapter's recipe: SAGAN on 200 sevens + 200 eights of MNIST, 64×64.

Reproduces the PyTorch chapter (Generator/Discriminator with image_size=64,
z_dim=20, hinge loss, Adam β=(0, 0.9), lr_G=1e-4, lr_D=4e-4, batch 64 with
the last partial batch of 16 kept, 300 epochs = 2,100 steps). The digits ship
with the package (offline).

    python train.py --config configs/mnist78.py --workdir runs/mnist78
    python evaluate.py --workdir runs/mnist78

Shorter run: ``--config.num_steps=600``. On a quiet 2-core CPU a step takes
1.5 s on average (1.7 s for a batch of 64, ~0.5 s for the epoch's last batch
of 16; README Performance), the whole recipe about 55 minutes.
"""

from sagan_jax.train.config import base_config


def get_config():
  return base_config()
