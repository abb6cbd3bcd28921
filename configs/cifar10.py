"""StudioGAN's SAGAN on CIFAR-10: class-conditional ResNet SAGAN at 32×32 (TFDS cifar10).

StudioGAN's ``src/configs/CIFAR10/SAGAN.yaml`` with the defaults of its ``src/config.py``
(v0.4): cBN generator and projection discriminator, spectral norm on both (eps 1e-6),
attention after G's block 2 and D's block 1 (16×16 in both), g_conv_dim = d_conv_dim = 64
(G 256 channels, D 128), z 128, orthogonal init, hinge loss, Adam lr 2e-4 for both with
β = (0.5, 0.999) and eps 1e-6, 5 D updates per G update, batch 64, 100,000 steps, no EMA,
random horizontal flips of the training images.

    pip install -e '.[tfds]'
    python train.py --config configs/cifar10.py --workdir runs/cifar10 \\
        --config.data.tfds_download=True        # the first time: TFDS downloads cifar10
    python evaluate.py stats --source tfds:cifar10 --split train --out cifar10_train.npz \\
        --inception_weights pt_inception-2015-12-05-6726825d.pth
    python evaluate.py --workdir runs/cifar10 --num_samples 50000 --features inception \\
        --inception_weights pt_inception-2015-12-05-6726825d.pth --ref_stats cifar10_train.npz

Expected: StudioGAN reports FID 10.35 / IS 8.64 for this recipe (50,000 samples against the
training set's statistics). ``evaluate.py --features inception`` computes FID with
pytorch-fid's Inception weights (its file, fetched once by the user), the protocol of those
numbers. 100,000 steps of 5 D updates each are GPU work.
"""

from configs import common
from sagan_jax.train.config import base_config


def get_config():
  config = base_config()
  config.data.source = "tfds"
  config.data.tfds_name = "cifar10"
  config.data.tfds_split = "train"
  config.data.channels = 3
  config.data.random_flip = True  # StudioGAN's apply_rflip (on by default in its src/config.py)
  # Attention after StudioGAN's G block 2 (attn_g_loc: [2]) and D block 1 (attn_d_loc: [1]).
  common.resnet_sagan(config, resolution=32, num_classes=10, attention=16, style="studiogan")
  # StudioGAN's DiscBlock: its in-place ReLU also rewrites the shortcut's input.
  config.model.d_shortcut_after_activation = True
  common.adam(config, lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), eps=1e-6, d_steps=5)
  config.batching.batch_size = 64
  config.num_steps = 100_000
  config.log_every = 100
  config.sample_every = 2_000
  config.checkpoint_every = 2_000
  config.num_samples = 100  # a 10 × 10 class grid
  # Evaluation as published (FID/IS on the FID Inception), on with --config.eval.every=N,
  # --config.eval.inception_weights=pt_inception-….pth and (optional) --config.eval.ref_stats
  config.eval.features = "inception"
  return config
