"""Class-conditional ResNet SAGAN on all ten MNIST digits at 32×32, offline (draft)."""

from sagan_jax.train.config import base_config


def get_config():
  config = base_config()
  config.data.source = "mnist"
  config.data.digits = tuple(range(10))
  config.data.per_digit = 400
  config.data.image_size = 32
  config.model.name = "resnet"
  config.model.num_classes = 10
  config.model.z_dim = 128
  config.model.width = 8  # G: 32 channels in every block
  config.model.d_width = 16  # D: 32 channels
  config.model.g_attention = (16,)
  config.model.d_attention = (16,)
  config.model.weight_init = "orthogonal"
  config.model.bn_style = "studiogan"
  config.model.cbn_spectral_norm = True
  config.model.spectral_eps = 1e-6
  config.model.conv_implementation = "xla"
  config.batching.batch_size = 64
  config.batching.drop_remainder = True
  config.optimizer.lr_g = 2e-4
  config.optimizer.lr_d = 4e-4
  config.optimizer.b1 = 0.0
  config.optimizer.b2 = 0.9
  config.optimizer.eps = 1e-6
  config.ema.decay = 0.999
  config.ema.start_step = 500
  config.num_steps = 2500
  config.num_samples = 100
  config.sample_every = 250
  config.checkpoint_every = 250
  config.keep_checkpoints = 20
  return config
