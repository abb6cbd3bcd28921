"""sagan-jax: the Self-Attention GAN in JAX/Flax."""

__version__ = "0.1.0"
