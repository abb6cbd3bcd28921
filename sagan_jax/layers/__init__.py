"""SAGAN building blocks: self-attention, PyTorch-exact convolutions, spectral norm."""

from sagan_jax.layers.attention import (OfficialSelfAttention, SelfAttention, attend,
                                        attention_weights)
from sagan_jax.layers.batch_norm import BatchNorm
from sagan_jax.layers.conv import (Conv, ConvTranspose, PointwiseConv, SNConv, SNConvTranspose,
                                   SNPointwiseConv)
from sagan_jax.layers.linear import Dense, Embed, SNDense, SNEmbed
from sagan_jax.layers.spectral_norm import (PowerIterationState, init_power_iteration, l2_normalize,
                                            power_iteration, spectral_norm_estimate,
                                            spectral_normalize, spectral_normalized, weight_matrix)
from sagan_jax.layers.spectral_norm_wrapper import SpectralNorm

__all__ = [
    "BatchNorm", "Conv", "ConvTranspose", "Dense", "Embed", "OfficialSelfAttention",
    "PointwiseConv", "PowerIterationState", "SNConv", "SNConvTranspose", "SNDense", "SNEmbed",
    "SNPointwiseConv", "SelfAttention", "SpectralNorm", "attend", "attention_weights",
    "init_power_iteration", "l2_normalize", "power_iteration", "spectral_norm_estimate", "spectral_normalize",
    "spectral_normalized", "weight_matrix",
]
