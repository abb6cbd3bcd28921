"""PyTorch reference: the chapter's SAGAN (book 5-4) and the paper's released attention.

Faithful to 「つくりながら学ぶ! PyTorchによる発展ディープラーニング」 5-4 (and the seed notebook):
same module names (including the `self_attntion1/2` misspelling), same init, same train-step
body. Nothing here is "improved": this file *is* the semantics the JAX side must match.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "Self_Attention",
    "Generator",
    "Discriminator",
    "weights_init",
    "init_chapter_models",
    "make_optimizers",
    "chapter_train_step",
    "OfficialSelfAttention",
    "sn_weight_matrix",
]


class Self_Attention(nn.Module):
    """The seed notebook / book's self-attention. Returns (out, attention_map)."""

    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.softmax = nn.Softmax(dim=-2)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        X = x
        proj_query = self.query_conv(X).view(X.shape[0], -1, X.shape[2] * X.shape[3])
        proj_query = proj_query.permute(0, 2, 1)
        proj_key = self.key_conv(X).view(X.shape[0], -1, X.shape[2] * X.shape[3])
        S = torch.bmm(proj_query, proj_key)
        attention_map_T = self.softmax(S)
        attention_map = attention_map_T.permute(0, 2, 1)
        proj_value = self.value_conv(X).view(X.shape[0], -1, X.shape[2] * X.shape[3])
        o = torch.bmm(proj_value, attention_map.permute(0, 2, 1))
        o = o.view(X.shape[0], X.shape[1], X.shape[2], X.shape[3])
        out = x + self.gamma * o
        return out, attention_map


class Generator(nn.Module):
    def __init__(self, z_dim=20, image_size=64):
        super().__init__()
        s = image_size
        self.layer1 = nn.Sequential(
            nn.utils.spectral_norm(nn.ConvTranspose2d(z_dim, s * 8, kernel_size=4, stride=1)),
            nn.BatchNorm2d(s * 8),
            nn.ReLU(inplace=True),
        )
        self.layer2 = nn.Sequential(
            nn.utils.spectral_norm(
                nn.ConvTranspose2d(s * 8, s * 4, kernel_size=4, stride=2, padding=1)
            ),
            nn.BatchNorm2d(s * 4),
            nn.ReLU(inplace=True),
        )
        self.layer3 = nn.Sequential(
            nn.utils.spectral_norm(
                nn.ConvTranspose2d(s * 4, s * 2, kernel_size=4, stride=2, padding=1)
            ),
            nn.BatchNorm2d(s * 2),
            nn.ReLU(inplace=True),
        )
        self.self_attntion1 = Self_Attention(in_dim=s * 2)
        self.layer4 = nn.Sequential(
            nn.utils.spectral_norm(
                nn.ConvTranspose2d(s * 2, s, kernel_size=4, stride=2, padding=1)
            ),
            nn.BatchNorm2d(s),
            nn.ReLU(inplace=True),
        )
        self.self_attntion2 = Self_Attention(in_dim=s)
        self.last = nn.Sequential(
            nn.ConvTranspose2d(s, 1, kernel_size=4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z):
        out = self.layer1(z)
        out = self.layer2(out)
        out = self.layer3(out)
        out, attention_map1 = self.self_attntion1(out)
        out = self.layer4(out)
        out, attention_map2 = self.self_attntion2(out)
        out = self.last(out)
        return out, attention_map1, attention_map2


class Discriminator(nn.Module):
    def __init__(self, z_dim=20, image_size=64):
        super().__init__()
        s = image_size
        self.layer1 = nn.Sequential(
            nn.utils.spectral_norm(nn.Conv2d(1, s, kernel_size=4, stride=2, padding=1)),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.layer2 = nn.Sequential(
            nn.utils.spectral_norm(nn.Conv2d(s, s * 2, kernel_size=4, stride=2, padding=1)),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.layer3 = nn.Sequential(
            nn.utils.spectral_norm(nn.Conv2d(s * 2, s * 4, kernel_size=4, stride=2, padding=1)),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.self_attntion1 = Self_Attention(in_dim=s * 4)
        self.layer4 = nn.Sequential(
            nn.utils.spectral_norm(nn.Conv2d(s * 4, s * 8, kernel_size=4, stride=2, padding=1)),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.self_attntion2 = Self_Attention(in_dim=s * 8)
        self.last = nn.Conv2d(s * 8, 1, kernel_size=4, stride=1)

    def forward(self, x):
        out = self.layer1(x)
        out = self.layer2(out)
        out = self.layer3(out)
        out, attention_map1 = self.self_attntion1(out)
        out = self.layer4(out)
        out, attention_map2 = self.self_attntion2(out)
        out = self.last(out)
        return out, attention_map1, attention_map2


def weights_init(m):
    """The book's init, applied with `.apply`.

    For spectral-norm-wrapped convs `m.weight` is a plain attribute holding
    `weight_orig.data` (same storage) until the first forward call, so this
    reaches `weight_orig`. `init_chapter_models` asserts that it did.
    """
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
        nn.init.constant_(m.bias.data, 0)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def _sn_modules(model):
    return [m for m in model.modules() if hasattr(m, "weight_orig")]


def init_chapter_models(z_dim=20, image_size=64):
    """Construct G then D and `.apply(weights_init)` to G then D, as the book does.

    RNG order (global torch generator): G's default init + SN u/v draws, D's likewise,
    then weights_init over G, then over D. Asserts the init reached every `weight_orig`.
    """
    G = Generator(z_dim=z_dim, image_size=image_size)
    D = Discriminator(z_dim=z_dim, image_size=image_size)
    for model in (G, D):
        before = {}
        for m in _sn_modules(model):
            assert m.weight.data_ptr() == m.weight_orig.data_ptr(), "SN weight no longer aliases weight_orig"
            before[id(m)] = m.weight_orig.detach().clone()
        model.apply(weights_init)
        for m in _sn_modules(model):
            assert not torch.equal(before[id(m)], m.weight_orig.detach()), (
                "weights_init did not reach weight_orig (storage sharing broken?)"
            )
    return G, D


def make_optimizers(G, D, g_lr=0.0001, d_lr=0.0004, beta1=0.0, beta2=0.9):
    """The chapter's optimizers: Adam(G, 1e-4, (0, 0.9)), Adam(D, 4e-4, (0, 0.9))."""
    g_optimizer = torch.optim.Adam(G.parameters(), g_lr, [beta1, beta2])
    d_optimizer = torch.optim.Adam(D.parameters(), d_lr, [beta1, beta2])
    return g_optimizer, d_optimizer


def chapter_train_step(G, D, g_optimizer, d_optimizer, imges, z1, z2, loss="hinge"):
    """The chapter's loop body, verbatim (G and D must already be in train mode).

    `z1`, `z2`: (B, z_dim, 1, 1). `loss`: 'hinge' (the chapter) or 'non_saturating'.
    Returns float32 tensors (detached): d_loss, g_loss, d_out_real, d_out_fake (D step),
    g_d_out_fake (G step).
    """
    if loss not in ("hinge", "non_saturating"):
        raise ValueError(f"unknown loss {loss!r}")

    # --- 1. Discriminator ---
    d_out_real, _, _ = D(imges)

    input_z = z1
    fake_images, _, _ = G(input_z)
    d_out_fake, _, _ = D(fake_images)  # NOT detached: d_loss.backward() also reaches G

    if loss == "hinge":
        d_loss_real = torch.nn.ReLU()(1.0 - d_out_real).mean()
        d_loss_fake = torch.nn.ReLU()(1.0 + d_out_fake).mean()
    else:
        d_loss_real = F.softplus(-d_out_real).mean()
        d_loss_fake = F.softplus(d_out_fake).mean()
    d_loss = d_loss_real + d_loss_fake

    g_optimizer.zero_grad()
    d_optimizer.zero_grad()

    d_loss.backward()
    d_optimizer.step()

    # --- 2. Generator ---
    input_z = z2
    fake_images, _, _ = G(input_z)
    d_out_fake2, _, _ = D(fake_images)

    if loss == "hinge":
        g_loss = -d_out_fake2.mean()
    else:
        g_loss = F.softplus(-d_out_fake2).mean()

    g_optimizer.zero_grad()
    d_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()

    return dict(
        d_loss=d_loss.detach(),
        g_loss=g_loss.detach(),
        d_out_real=d_out_real.detach(),
        d_out_fake=d_out_fake.detach(),
        g_d_out_fake=d_out_fake2.detach(),
    )


class OfficialSelfAttention(nn.Module):
    """The SAGAN paper's released code / BigGAN-PyTorch `layers.Attention`.

    SN via `torch.nn.utils.spectral_norm` (defaults) on all four 1x1 convs (no biases).
    `gamma` is a 0-d parameter (as in BigGAN-PyTorch). Returns (gamma*o + x, beta) with
    beta of shape (B, N, N/4), rows summing to 1 over the pooled keys.
    """

    def __init__(self, ch):
        super().__init__()
        self.ch = ch
        sn = nn.utils.spectral_norm
        self.theta = sn(nn.Conv2d(ch, ch // 8, kernel_size=1, padding=0, bias=False))
        self.phi = sn(nn.Conv2d(ch, ch // 8, kernel_size=1, padding=0, bias=False))
        self.g = sn(nn.Conv2d(ch, ch // 2, kernel_size=1, padding=0, bias=False))
        self.o = sn(nn.Conv2d(ch // 2, ch, kernel_size=1, padding=0, bias=False))
        self.gamma = nn.Parameter(torch.tensor(0.0), requires_grad=True)

    def forward(self, x):
        theta = self.theta(x)
        phi = F.max_pool2d(self.phi(x), [2, 2])
        g = F.max_pool2d(self.g(x), [2, 2])
        theta = theta.view(-1, self.ch // 8, x.shape[2] * x.shape[3])
        phi = phi.view(-1, self.ch // 8, x.shape[2] * x.shape[3] // 4)
        g = g.view(-1, self.ch // 2, x.shape[2] * x.shape[3] // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(-1, self.ch // 2, x.shape[2], x.shape[3]))
        return self.gamma * o + x, beta


def sn_weight_matrix(weight, dim):
    """`weight` as torch's SpectralNorm sees it: `dim` moved first, the rest flattened."""
    if dim != 0:
        weight = weight.permute(dim, *[d for d in range(weight.dim()) if d != dim])
    return weight.reshape(weight.size(0), -1)
