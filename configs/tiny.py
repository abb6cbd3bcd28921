"""A tiny version of the mnist78 pipeline, for tests and smoke runs.

Same data, models and step as configs/mnist78.py, but width 8 (G/D have a
few thousand parameters), 32 images, batch 8 (divides over 1, 2, 4 and 8
devices), 6 steps, a checkpoint every 2 steps. A step runs in well under a
second on CPU (compilation takes longer).

    python train.py --config configs/tiny.py --workdir /tmp/sagan_tiny
"""

from sagan_jax.train.config import base_config


def get_config():
  config = base_config()
  config.model.width = 8
  config.data.per_digit = 16  # 32 images → 4 steps per epoch at batch 8
  config.batching.batch_size = 8
  config.num_steps = 6
  config.log_every = 1
  config.sample_every = 3
  config.checkpoint_every = 2
  config.num_samples = 16
  return config
