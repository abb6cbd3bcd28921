"""PyTorch reference of StudioGAN's SAGAN: ResNet generator with conditional BN, projection D.

Written here from the architecture facts of POSTECH-CVLab/PyTorch-StudioGAN (``src/models/
resnet.py``, ``src/utils/ops.py``, ``src/config.py``, ``src/configs/*/SAGAN.yaml``), not copied:

* every conv / linear / embedding is ``torch.nn.utils.spectral_norm(..., eps=1e-6)``;
* ``ConditionalBatchNorm2d``: ``BatchNorm2d(eps=1e-4, momentum=0.1, affine=False)`` then
  ``· (1 + gain(one_hot(y))) + bias(one_hot(y))``, gain/bias SN ``Linear(K, C, bias=False)``;
* G: SN linear z → C₀·4·4 (``view(-1, C₀, 4, 4)``), ``GenBlock``s (bn1, ReLU, nearest ×2,
  conv2d1 3×3, bn2, ReLU, conv2d2 3×3; shortcut nearest ×2 then conv2d0 1×1), attention
  after block ``k`` for ``k in attn_g_loc``, ``bn4`` (BatchNorm2d eps 1e-4, affine), ReLU,
  ``conv2d5`` 3×3 → 3, tanh;
* D: ``DiscOptBlock`` (conv2d1, ReLU, conv2d2, avgpool; shortcut avgpool then conv2d0),
  ``DiscBlock``s (ReLU, conv2d1, ReLU, conv2d2, [avgpool]; shortcut conv2d0 then [avgpool]
  when downsampling or widening, else identity), attention after block ``k in attn_d_loc``,
  ReLU, sum over H, W, ``linear1`` → 1 plus ``sum(embedding(y) · h)``;
* attention (``SelfAttention``): SN 1×1 convs θ, φ (C/8), g (C/2), attn (C/2 → C), no bias;
  φ and g max-pooled 2×2; ``softmax(θᵀφ, dim=-1)``; ``x + sigma · attn(g · βᵀ)``, sigma
  a (1,) parameter starting at 0;
* init ``"ortho"``: ``orthogonal_`` on every Conv2d/Linear/Embedding weight (it reaches
  ``weight_orig``: before the first forward ``module.weight`` aliases it), biases 0.

Where this follows a StudioGAN quirk (each marked ``QUIRK`` below):

* activations are ``nn.ReLU(inplace=True)`` modules (``src/config.py``: ``MODULES.g_act_fn``,
  ``d_act_fn``), and ``DiscBlock.forward`` keeps ``x0 = x`` *before* ``x = self.activation(x)``:
  the in-place ReLU rewrites ``x0`` too, so every ``DiscBlock``'s shortcut (1×1 conv or
  identity) sees ``relu(x)``. ``DiscOptBlock`` (no activation before its shortcut) and the
  generator (its ReLUs act on BN outputs, never on a tensor kept elsewhere) are unaffected.
  Ours: ``ResNetDiscriminator(shortcut_after_activation=True)``;
* the conditional BN is ``ops.ConditionalBatchNorm2d`` of StudioGAN v0.4: gain and bias are
  ``g_linear`` (SN linear, no bias) applied to ``one_hot(y)`` (``Generator.forward`` one-hots
  the label), so the class tables carry spectral norm; its BN has eps 1e-4 and no affine,
  while ``bn4`` is ``ops.batchnorm_2d`` (eps 1e-4, momentum 0.1, affine);
* the shortcut 1×1 convs run at the larger resolution (G: upsample then conv2d0; D's
  ``DiscBlock``: conv2d0 then avgpool; ``DiscOptBlock``: avgpool then conv2d0);
* ``linear1``'s output is ``torch.squeeze``d (here ``squeeze(1)``, the same for batch > 1).

State-dict keys are StudioGAN's (``blocks.<i>.0.conv2d1.weight_orig``, ``bn4.running_var``…),
so ``sagan_jax.interop.torch.from_torch`` loads StudioGAN's released SAGAN weights the same
way it loads these.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SN_EPS = 1e-6
BN_EPS = 1e-4
ADAM_EPS = 1e-6  # StudioGAN's Adam eps for its non-StyleGAN backbones

G_CHANNELS = {32: (4, (4, 4, 4)), 64: (16, (8, 4, 2, 1)), 128: (16, (16, 8, 4, 2, 1))}
D_CHANNELS = {
    32: ((2, True), (2, True), (2, False), (2, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
}


def sn(module: nn.Module) -> nn.Module:
    return nn.utils.spectral_norm(module, eps=SN_EPS)


def conv(cin: int, cout: int, k: int, bias: bool = True) -> nn.Module:
    return sn(nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=k // 2, bias=bias))


class ConditionalBatchNorm2d(nn.Module):
    def __init__(self, num_classes: int, features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(features, eps=BN_EPS, momentum=0.1, affine=False)
        self.gain = sn(nn.Linear(num_classes, features, bias=False))
        self.bias = sn(nn.Linear(num_classes, features, bias=False))

    def forward(self, x, one_hot):
        gain = (1 + self.gain(one_hot)).view(one_hot.size(0), -1, 1, 1)
        bias = self.bias(one_hot).view(one_hot.size(0), -1, 1, 1)
        return self.bn(x) * gain + bias


class SelfAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1x1_theta = conv(channels, channels // 8, 1, bias=False)
        self.conv1x1_phi = conv(channels, channels // 8, 1, bias=False)
        self.conv1x1_g = conv(channels, channels // 2, 1, bias=False)
        self.conv1x1_attn = conv(channels // 2, channels, 1, bias=False)
        self.sigma = nn.Parameter(torch.zeros(1))

    def forward(self, x, return_map: bool = False):
        b, c, h, w = x.shape
        theta = self.conv1x1_theta(x).view(b, c // 8, h * w)
        phi = F.max_pool2d(self.conv1x1_phi(x), 2).view(b, c // 8, h * w // 4)
        beta = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = F.max_pool2d(self.conv1x1_g(x), 2).view(b, c // 2, h * w // 4)
        o = self.conv1x1_attn(torch.bmm(g, beta.permute(0, 2, 1)).view(b, c // 2, h, w))
        out = x + self.sigma * o
        return (out, beta) if return_map else out


class GenBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes):
        super().__init__()
        self.conditional = num_classes is not None
        if self.conditional:
            self.bn1 = ConditionalBatchNorm2d(num_classes, cin)
            self.bn2 = ConditionalBatchNorm2d(num_classes, cout)
        else:
            self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS, momentum=0.1)
            self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=0.1)
        self.activation = nn.ReLU(inplace=True)  # QUIRK (harmless here): in place
        self.conv2d0 = conv(cin, cout, 1)
        self.conv2d1 = conv(cin, cout, 3)
        self.conv2d2 = conv(cout, cout, 3)

    def _bn(self, bn, x, one_hot):
        return bn(x, one_hot) if self.conditional else bn(x)

    def forward(self, x, one_hot):
        x0 = x
        x = self.activation(self._bn(self.bn1, x, one_hot))  # a fresh BN output: x0 intact
        x = self.conv2d1(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.activation(self._bn(self.bn2, x, one_hot))
        x = self.conv2d2(x)
        # QUIRK: the 1×1 shortcut after the upsampling (the larger resolution)
        return x + self.conv2d0(F.interpolate(x0, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    def __init__(self, img_size=32, z_dim=128, g_conv_dim=64, num_classes=10, attn_g_loc=(2,),
                 img_channels=3, init="ortho"):
        super().__init__()
        first, outs = G_CHANNELS[img_size]
        ins = (first,) + outs[:-1]
        self.num_classes, self.in0 = num_classes, first * g_conv_dim
        self.linear0 = sn(nn.Linear(z_dim, self.in0 * 16, bias=True))
        blocks = []
        for index, (cin, cout) in enumerate(zip(ins, outs)):
            blocks.append([GenBlock(cin * g_conv_dim, cout * g_conv_dim, num_classes)])
            if index + 1 in attn_g_loc:
                blocks.append([SelfAttention(cout * g_conv_dim)])
        self.blocks = nn.ModuleList([nn.ModuleList(b) for b in blocks])
        self.bn4 = nn.BatchNorm2d(outs[-1] * g_conv_dim, eps=BN_EPS, momentum=0.1)
        self.activation = nn.ReLU(inplace=True)
        self.conv2d5 = conv(outs[-1] * g_conv_dim, img_channels, 3)
        init_weights(self, init)

    def forward(self, z, label=None, return_maps: bool = False):
        one_hot = None
        if self.num_classes is not None:
            one_hot = F.one_hot(label, num_classes=self.num_classes).to(torch.float32)
        act = self.linear0(z).view(-1, self.in0, 4, 4)
        maps = []
        for blocklist in self.blocks:
            for block in blocklist:
                if isinstance(block, SelfAttention):
                    act, beta = block(act, return_map=True)
                    maps.append(beta)
                else:
                    act = block(act, one_hot)
        out = torch.tanh(self.conv2d5(self.activation(self.bn4(act))))
        return (out, maps) if return_maps else out


class DiscOptBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv2d0 = conv(cin, cout, 1)
        self.conv2d1 = conv(cin, cout, 3)
        self.conv2d2 = conv(cout, cout, 3)
        self.activation = nn.ReLU(inplace=True)  # QUIRK: in place (on conv2d1's output only)

    def forward(self, x):
        x0 = x
        x = self.conv2d1(x)
        x = self.activation(x)
        x = self.conv2d2(x)
        x = F.avg_pool2d(x, 2)
        x0 = self.conv2d0(F.avg_pool2d(x0, 2))  # pooled first, then the 1×1 conv
        return x + x0


class DiscBlock(nn.Module):
    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.ch_mismatch = cin != cout
        if self.ch_mismatch or downsample:
            self.conv2d0 = conv(cin, cout, 1)
        self.conv2d1 = conv(cin, cout, 3)
        self.conv2d2 = conv(cout, cout, 3)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x0 = x
        # QUIRK: the in-place ReLU rewrites the tensor x0 refers to, so the shortcut below
        # (conv2d0, or the identity) gets relu(x), as StudioGAN's DiscBlock computes it.
        x = self.activation(x)
        x = self.conv2d1(x)
        x = self.activation(x)
        x = self.conv2d2(x)
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.downsample or self.ch_mismatch:
            x0 = self.conv2d0(x0)  # QUIRK: the 1×1 conv before the pooling
            if self.downsample:
                x0 = F.avg_pool2d(x0, 2)
        return x + x0


class Discriminator(nn.Module):
    def __init__(self, img_size=32, d_conv_dim=64, num_classes=10, attn_d_loc=(1,),
                 img_channels=3, init="ortho"):
        super().__init__()
        blocks = []
        cin = img_channels
        for index, (multiple, down) in enumerate(D_CHANNELS[img_size]):
            cout = multiple * d_conv_dim
            block = DiscOptBlock(cin, cout) if index == 0 else DiscBlock(cin, cout, down)
            blocks.append([block])
            if index + 1 in attn_d_loc:
                blocks.append([SelfAttention(cout)])
            cin = cout
        self.blocks = nn.ModuleList([nn.ModuleList(b) for b in blocks])
        self.num_classes = num_classes
        self.linear1 = sn(nn.Linear(cin, 1, bias=True))
        if num_classes is not None:
            self.embedding = sn(nn.Embedding(num_classes, cin))
        self.activation = nn.ReLU(inplace=True)
        init_weights(self, init)

    def forward(self, x, label=None, return_maps: bool = False):
        h, maps = x, []
        for blocklist in self.blocks:
            for block in blocklist:
                if isinstance(block, SelfAttention):
                    h, beta = block(h, return_map=True)
                    maps.append(beta)
                else:
                    h = block(h)
        h = torch.sum(self.activation(h), dim=[2, 3])
        out = self.linear1(h).squeeze(1)
        if self.num_classes is not None:
            out = out + torch.sum(self.embedding(label) * h, 1)
        return (out, maps) if return_maps else out


def init_weights(model: nn.Module, init: str) -> None:
    """StudioGAN's ``init_weights``: ``ortho`` (orthogonal weights, zero biases) or
    ``pytorch`` (leave PyTorch's defaults)."""
    if init == "pytorch":
        return
    if init != "ortho":
        raise ValueError(f"unknown init {init!r}")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            assert m.weight.data_ptr() == m.weight_orig.data_ptr(), "SN weight no longer aliases"
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                m.bias.data.fill_(0.0)


def make_optimizers(G, D, g_lr=2e-4, d_lr=4e-4, beta1=0.0, beta2=0.999, eps=ADAM_EPS):
    return (torch.optim.Adam(G.parameters(), g_lr, (beta1, beta2), eps=eps),
            torch.optim.Adam(D.parameters(), d_lr, (beta1, beta2), eps=eps))


def hinge_d(real, fake):
    return torch.mean(F.relu(1.0 - real)) + torch.mean(F.relu(1.0 + fake))


def train_step(G, D, g_opt, d_opt, real_steps, z2, y2, ema=None, step=1, ema_decay=0.999,
               ema_start=0):
    """One step in sagan-jax's order (G, D in train mode): for each ``(x, y, z1, y1)`` of
    ``real_steps`` a D update on ``D(x, y)`` and ``D(G(z1, y1), y1)``; then a G update on
    ``D(G(z2, y2), y2)``; then, with ``ema`` (a copy of G), its moving average (params
    and BN running statistics lerped, SN vectors copied; a copy until ``ema_start``)."""
    outs = {}
    for x, y, z1, y1 in real_steps:
        d_real = D(x, y)
        fake = G(z1, y1)
        d_fake = D(fake, y1)
        d_loss = hinge_d(d_real, d_fake)
        g_opt.zero_grad()
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        outs.update(d_loss=d_loss.detach(), d_real=d_real.detach().mean(),
                    d_fake=d_fake.detach().mean())
    g_out = D(G(z2, y2), y2)
    g_loss = -g_out.mean()
    g_opt.zero_grad()
    d_opt.zero_grad()
    g_loss.backward()
    g_opt.step()
    outs["g_loss"] = g_loss.detach()
    if ema is not None:
        decay = ema_decay if step > ema_start else 0.0
        with torch.no_grad():
            for (name, p_ema), p in zip(ema.named_parameters(), G.parameters()):
                p_ema.copy_(decay * p_ema + (1 - decay) * p)
            for (name, b_ema), b in zip(ema.named_buffers(), G.buffers()):
                if name.endswith(("running_mean", "running_var")):
                    b_ema.copy_(decay * b_ema + (1 - decay) * b)
                else:  # SN u, v and num_batches_tracked: copied
                    b_ema.copy_(b)
    return outs
