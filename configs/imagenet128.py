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
``tfds build imagenet2012 --file_format=array_record``.

    python train.py --config configs/imagenet128.py --workdir runs/imagenet128

Several hosts: run the same command on every host with ``--workdir`` a path of a filesystem
they all share (NFS, or a bucket mounted with gcsfuse; URLs such as ``gs://…`` are refused)
and either ``SAGAN_DISTRIBUTED=1`` (JAX reads the cluster from SLURM, Open MPI, Cloud TPU
or Kubernetes) or ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
set (`sagan_jax.runtime.distributed`). The global batch is split over all
devices.

Expected: the paper reports IS 52.52 / FID 18.65 (its TF Inception, 50,000 samples) after
~1 M iterations on 4 GPUs (about two weeks).
"""

from configs import common
from sagan_jax.train.config import base_config


def get_config():
  config = base_config()
  config.data.source = "tfds_stream"
  config.data.tfds_name = "imagenet2012"
  config.data.tfds_split = "train"
  config.data.channels = 3
  # The released code reads 128-px TFRecords made by improved-gan's
  # imagenet/convert_imagenet_to_records.py (its README's instruction): utils.center_crop cuts
  # each image to the centred square of its long edge, then resizes to 128 (scipy imresize,
  # bilinear; ours stays bicubic); training adds no flip (the released dataset.py).
  config.data.crop = "center_long_edge"
  config.data.random_flip = False
  common.resnet_sagan(config, resolution=128, num_classes=1000, attention=32, style="official")
  common.adam(config, lr_g=1e-4, lr_d=4e-4, betas=(0.0, 0.9))
  config.batching.batch_size = 256
  config.batching.prefetch = 4
  config.num_steps = 1_000_000
  config.log_every = 100
  config.sample_every = 5_000
  config.checkpoint_every = 5_000
  config.num_samples = 64
  # Evaluation as published (FID/IS on the FID Inception), on with --config.eval.every=N,
  # --config.eval.inception_weights=pt_inception-….pth and (optional) --config.eval.ref_stats
  config.eval.features = "inception"
  return config
