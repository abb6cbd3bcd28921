"""StudioGAN's SAGAN on CIFAR-10: class-conditional ResNet SAGAN at 32×32 (TFDS cifar10).

StudioGAN's ``src/configs/CIFAR10/SAGAN.yaml`` with the defaults of its ``src/config.py``
(v0.4): cBN generator and projection discriminator, spectral norm on both (eps 1e-6),
attention after G's block 2 and D's block 1 (16×16 in both), g_conv_dim = d_conv_dim = 64
(G 256 channels, D 128), z 128, orthogonal init, hinge loss, Adam lr 2e-4 for both with
β = (0.5, 0.999) and eps 1e-6, 5 D updates per G update, batch 64, 100,000 steps, no EMA.

    pip install -e '.[tfds]'
    python train.py --config configs/cifar10.py --workdir runs/cifar10 \\
        --config.data.tfds_download=True        # the first time: TFDS downloads cifar10

Expected: StudioGAN reports FID 10.35 / IS 8.64 for this recipe (TF Inception, 50,000
samples vs the training set). sagan-jax's bundled evaluation has no Inception network (its
FID features are an MNIST classifier's), so those numbers are not reproduced by
``evaluate.py``; plug an Inception extractor in through ``sagan_jax.eval.FeatureExtractor``.

Whether it ran here: no. The 2-core CPU of this project's sessions needs ~X s per step for
this model (benchmarks/train_step.py measures the 32-px step), so 100,000 steps are
GPU work; the config is checked by tests/test_configs.py (it builds, validates, and its
models have StudioGAN's parameter counts).
"""

from sagan_jax.train.config import base_config


def get_config():
  config = base_config()
  config.data.source = "tfds"
  config.data.tfds_name = "cifar10"
  config.data.tfds_split = "train"
  config.data.image_size = 32
  config.data.channels = 3
  config.model.name = "resnet"
  config.model.num_classes = 10
  config.model.z_dim = 128
  config.model.width = 64
  config.model.d_width = 64
  config.model.g_attention = (16,)  # StudioGAN attn_g_loc: [2]
  config.model.d_attention = (16,)  # attn_d_loc: [1]
  config.model.weight_init = "orthogonal"
  config.model.bn_style = "studiogan"
  config.model.cbn_spectral_norm = True
  config.model.spectral_eps = 1e-6
  config.model.d_shortcut_after_activation = True  # its DiscBlock's in-place ReLU
  config.loss = "hinge"
  config.batching.batch_size = 64
  config.batching.drop_remainder = True  # 5 D batches per step are stacked
  config.optimizer.lr_g = 2e-4
  config.optimizer.lr_d = 2e-4
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.d_steps = 5
  config.num_steps = 100_000
  config.log_every = 100
  config.sample_every = 2_000
  config.checkpoint_every = 2_000
  config.num_samples = 100  # a 10 × 10 class grid
  return config
