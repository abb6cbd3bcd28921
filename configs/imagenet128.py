"""The SAGAN paper's setup: class-conditional ResNet SAGAN on ImageNet at 128×128.

Zhang, Goodfellow, Metaxas, Odena (ICML 2019) and their released TF code: the 128-px
ResNet generator (conditional BN) and projection discriminator with gf_dim = df_dim = 64,
self-attention at 32×32 in both networks (the paper's best, feat32), spectral norm in G and
D, hinge loss, Adam β = (0, 0.9) with the two-timescale learning rates 1e-4 (G) and 4e-4
(D), one D step per G step, batch 256, z 128, Xavier init, the released code's conditional
BN (per-class γ, β; moving averages with decay 0.999) and no EMA.

Data: TFDS ``imagenet2012`` (the train split, 1.28 M images), read with random access from
its ArrayRecord files and decoded per batch (``data.source='tfds_stream'``): each process
decodes only its slice of every global batch, and a batch is a function of the step, so a
resumed or multi-host run sees the same data. TFDS cannot download ImageNet: place the
archives in its manual folder and prepare it once with
``tfds build imagenet2012 --file_format=array_record``. Multi-host: launch
``python train.py --config configs/imagenet128.py --workdir gs://…`` on every host (JAX's
distributed initialization reads the cluster from the environment); the global batch is
split over all devices.

    python train.py --config configs/imagenet128.py --workdir runs/imagenet128

Expected: the paper reports IS 52.52 / FID 18.65 (its TF Inception, 50,000 samples) after
~1 M iterations on 4 GPUs (about two weeks). Not run here (CPU only); the config is checked
by tests/test_configs.py (it validates and its models build at these sizes).
"""

from sagan_jax.train.config import base_config


def get_config():
  config = base_config()
  config.data.source = "tfds_stream"
  config.data.tfds_name = "imagenet2012"
  config.data.tfds_split = "train"
  config.data.image_size = 128
  config.data.channels = 3
  config.model.name = "resnet"
  config.model.num_classes = 1000
  config.model.z_dim = 128
  config.model.width = 64
  config.model.d_width = 64
  config.model.g_attention = (32,)
  config.model.d_attention = (32,)
  config.model.weight_init = "xavier"
  config.model.bn_style = "official"
  config.model.cbn_spectral_norm = False
  config.loss = "hinge"
  config.batching.batch_size = 256
  config.batching.drop_remainder = True
  config.batching.prefetch = 4
  config.optimizer.lr_g = 1e-4
  config.optimizer.lr_d = 4e-4
  config.optimizer.b1 = 0.0
  config.optimizer.b2 = 0.9
  config.num_steps = 1_000_000
  config.log_every = 100
  config.sample_every = 5_000
  config.checkpoint_every = 5_000
  config.num_samples = 64
  # Evaluation as published (FID/IS on the FID Inception), on with --config.eval.every=N,
  # --config.eval.inception_weights=pt_inception-….pth and (optional) --config.eval.ref_stats
  config.eval.features = "inception"
  return config
