"""Parity cases: one function per case, `case_xxx(seed, ...) -> dict[str, np.ndarray]`.

Used twice: `make_fixtures.py` writes each with seed 0 to `fixtures/<case>.npz`, and the JAX
tests may call them live (when torch is installed) on fresh seeds. Keys are flat, '/'-separated;
leaves under `.../state/` and `.../grad/` are PyTorch state_dict / parameter names (dotted), so
`{k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}` is a torch state_dict.
Floating arrays are float32 in PyTorch layout (NCHW activations, torch weight layouts); integer
tensors (embedding indices, BN `num_batches_tracked`, row indices) are int64.
Every key is documented in README.md next to this file.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import torch_sagan as ts

__all__ = [
    "CASES",
    "case_sn_linear",
    "case_sn_conv2d",
    "case_sn_conv_transpose2d",
    "case_sn_conv_transpose2d_z",
    "case_sn_embedding",
    "case_self_attention_seed",
    "case_self_attention_seed_rect",
    "case_self_attention_official",
    "case_chapter_models",
    "case_chapter_train_step",
    "attention_rows_index",
]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def torch_determinism(seed: int):
    """Seed torch, force deterministic kernels and one intra-op thread; restore all afterwards.

    One thread makes CPU reductions (sum/mean/BN statistics) independent of the machine's
    core count; the global RNG state is restored so callers are not disturbed.
    """
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)


def _np(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().numpy().copy()
    if a.dtype.kind == "f":
        a = a.astype(np.float32)
    return a


def _scalar(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return _np(x).reshape(())
    return np.asarray(x, dtype=np.float32).reshape(())


def _put_state(rec: dict, prefix: str, module: nn.Module, buffers_only: bool = False) -> None:
    names = {n for n, _ in module.named_buffers()} if buffers_only else None
    for k, v in module.state_dict().items():
        if names is None or k in names:
            rec[f"{prefix}{k}"] = _np(v)


def _sn_dim(module: nn.Module) -> int:
    for hook in module._forward_pre_hooks.values():
        if type(hook).__name__ == "SpectralNorm":
            return hook.dim
    raise ValueError("module has no spectral_norm hook")


def _sigma(module: nn.Module) -> torch.Tensor:
    """sigma = u . (W_mat v) from the module's *current* u, v and weight_orig — the same ops
    torch's hook runs, so after a train call it is bit-identical to the sigma that call used."""
    with torch.no_grad():
        w = ts.sn_weight_matrix(module.weight_orig, _sn_dim(module))
        return torch.dot(module.weight_u, torch.mv(w, module.weight_v))


def attention_rows_index(n: int, max_rows: int = 4) -> np.ndarray:
    """Rows of an (N, N) attention map kept in fixtures: `max_rows` evenly spaced, incl. 0 and N-1."""
    return np.unique(np.linspace(0, n - 1, min(n, max_rows)).round().astype(np.int64))


# --------------------------------------------------------------------------- spectral norm


def _sn_case(make_module, make_input, out_shape, seed, n_power_iterations, float_input=True):
    with torch_determinism(seed):
        mod = nn.utils.spectral_norm(make_module(), n_power_iterations=n_power_iterations)
        dim = _sn_dim(mod)
        x = make_input()
        x2 = make_input()
        delta = 0.1 * torch.randn_like(mod.weight_orig)
        r = torch.randn(out_shape)

        rec: dict[str, np.ndarray] = {
            "config/n_power_iterations": np.asarray(n_power_iterations, np.int64),
            "config/dim": np.asarray(dim, np.int64),
            "config/eps": np.asarray(1e-12, np.float32),
        }
        rec["state/weight_orig"] = _np(mod.weight_orig)
        rec["state/weight_u"] = _np(mod.weight_u)
        rec["state/weight_v"] = _np(mod.weight_v)
        if getattr(mod, "bias", None) is not None:
            rec["state/bias"] = _np(mod.bias)
        rec["input/x"] = _np(x)
        rec["input/x2"] = _np(x2)
        rec["input/delta"] = _np(delta)
        rec["input/r"] = _np(r)

        def record(prefix, out, with_uv=True):
            rec[f"{prefix}/out"] = _np(out)
            if with_uv:
                rec[f"{prefix}/weight_u"] = _np(mod.weight_u)
                rec[f"{prefix}/weight_v"] = _np(mod.weight_v)
            rec[f"{prefix}/sigma"] = _scalar(_sigma(mod))
            rec[f"{prefix}/weight"] = _np(mod.weight)  # W_orig / sigma as torch computed it

        mod.train()
        with torch.no_grad():
            record("train1", mod(x))
            record("train2", mod(x2))
            mod.eval()
            record("eval", mod(x), with_uv=False)  # stored u, v (from train2), no iteration
            mod.train()
            mod.weight_orig.add_(delta)
        rec["changed/weight_orig"] = _np(mod.weight_orig)
        with torch.no_grad():
            record("train3", mod(x))

        xg = x.clone().requires_grad_(True) if float_input else x
        out = mod(xg)
        assert out.shape == r.shape, (out.shape, r.shape)
        loss = (out * r).sum()
        loss.backward()
        record("bwd", out)
        rec["bwd/loss"] = _scalar(loss)
        rec["bwd/grad/weight_orig"] = _np(mod.weight_orig.grad)
        if getattr(mod, "bias", None) is not None:
            rec["bwd/grad/bias"] = _np(mod.bias.grad)
        if float_input:
            rec["bwd/grad/x"] = _np(xg.grad)
        return rec


def case_sn_linear(seed: int, n_power_iterations: int = 1) -> dict[str, np.ndarray]:
    """SN(Linear(8 -> 6)); x (4, 8). Matrix = weight (6, 8), u (6,), v (8,)."""
    return _sn_case(lambda: nn.Linear(8, 6), lambda: torch.randn(4, 8), (4, 6), seed, n_power_iterations)


def case_sn_conv2d(seed: int, n_power_iterations: int = 1) -> dict[str, np.ndarray]:
    """SN(Conv2d(3 -> 5, k4 s2 p1)); x (2, 3, 8, 8) -> (2, 5, 4, 4). u (5,), v (48,)."""
    return _sn_case(
        lambda: nn.Conv2d(3, 5, kernel_size=4, stride=2, padding=1),
        lambda: torch.randn(2, 3, 8, 8),
        (2, 5, 4, 4),
        seed,
        n_power_iterations,
    )


def case_sn_conv_transpose2d(seed: int, n_power_iterations: int = 1) -> dict[str, np.ndarray]:
    """SN(ConvTranspose2d(6 -> 4, k4 s2 p1)); x (2, 6, 5, 5) -> (2, 4, 10, 10).
    weight (6, 4, 4, 4) = (Cin, Cout, kh, kw); SN dim 1: matrix (4, 96), u (4,), v (96,)."""
    return _sn_case(
        lambda: nn.ConvTranspose2d(6, 4, kernel_size=4, stride=2, padding=1),
        lambda: torch.randn(2, 6, 5, 5),
        (2, 4, 10, 10),
        seed,
        n_power_iterations,
    )


def case_sn_conv_transpose2d_z(seed: int, n_power_iterations: int = 1) -> dict[str, np.ndarray]:
    """SN(ConvTranspose2d(5 -> 8, k4 s1 p0)) on a 1x1 latent: x (2, 5, 1, 1) -> (2, 8, 4, 4).
    SN dim 1: matrix (8, 80), u (8,), v (80,)."""
    return _sn_case(
        lambda: nn.ConvTranspose2d(5, 8, kernel_size=4, stride=1, padding=0),
        lambda: torch.randn(2, 5, 1, 1),
        (2, 8, 4, 4),
        seed,
        n_power_iterations,
    )


def case_sn_embedding(seed: int, n_power_iterations: int = 1) -> dict[str, np.ndarray]:
    """SN(Embedding(10, 6)); int64 indices x (2, 5) -> (2, 5, 6).
    torch uses dim 0 for Embedding: matrix = weight (10, 6), u (10,), v (6,). No bias, no x grad."""
    return _sn_case(
        lambda: nn.Embedding(10, 6),
        lambda: torch.randint(0, 10, (2, 5), dtype=torch.int64),
        (2, 5, 6),
        seed,
        n_power_iterations,
        float_input=False,
    )


# --------------------------------------------------------------------------- self-attention


def _self_attention_seed(seed: int, h: int, w: int) -> dict[str, np.ndarray]:
    b, c = 2, 16
    with torch_determinism(seed):
        attn = ts.Self_Attention(c)
        with torch.no_grad():
            attn.gamma.fill_(0.7)
        x = torch.randn(b, c, h, w)
        r = torch.randn(b, c, h, w)
        rec: dict[str, np.ndarray] = {}
        _put_state(rec, "state/", attn)
        rec["input/x"] = _np(x)
        rec["input/r"] = _np(r)
        xg = x.clone().requires_grad_(True)
        out, amap = attn(xg)
        loss = (out * r).sum()
        loss.backward()
        rec["fwd/out"] = _np(out)
        rec["fwd/attention_map"] = _np(amap)
        rec["bwd/loss"] = _scalar(loss)
        for name, p in attn.named_parameters():
            rec[f"bwd/grad/{name}"] = _np(p.grad)
        rec["bwd/grad/x"] = _np(xg.grad)
        return rec


def case_self_attention_seed(seed: int) -> dict[str, np.ndarray]:
    """Self_Attention(16), gamma = 0.7, default (kaiming-uniform) conv init; x (2, 16, 4, 4)."""
    return _self_attention_seed(seed, 4, 4)


def case_self_attention_seed_rect(seed: int) -> dict[str, np.ndarray]:
    """As case_self_attention_seed with H=4, W=6 (N=24, n = h*W + w): pins the flattening order."""
    return _self_attention_seed(seed, 4, 6)


def case_self_attention_official(seed: int) -> dict[str, np.ndarray]:
    """OfficialSelfAttention(16), gamma = 0.7; x (2, 16, 4, 4); calls: train, eval, train+backward."""
    b, c, h, w = 2, 16, 4, 4
    with torch_determinism(seed):
        attn = ts.OfficialSelfAttention(c)
        with torch.no_grad():
            attn.gamma.fill_(0.7)
        x = torch.randn(b, c, h, w)
        r = torch.randn(b, c, h, w)
        rec: dict[str, np.ndarray] = {}
        _put_state(rec, "state/", attn)
        rec["input/x"] = _np(x)
        rec["input/r"] = _np(r)

        attn.train()
        with torch.no_grad():
            out, beta = attn(x)
        rec["train/out"] = _np(out)
        rec["train/beta"] = _np(beta)
        _put_state(rec, "train/state/", attn, buffers_only=True)

        attn.eval()
        with torch.no_grad():
            out, beta = attn(x)
        rec["eval/out"] = _np(out)
        rec["eval/beta"] = _np(beta)

        attn.train()
        xg = x.clone().requires_grad_(True)
        out, beta = attn(xg)
        loss = (out * r).sum()
        loss.backward()
        rec["bwd/out"] = _np(out)
        rec["bwd/beta"] = _np(beta)
        _put_state(rec, "bwd/state/", attn, buffers_only=True)
        rec["bwd/loss"] = _scalar(loss)
        for name, p in attn.named_parameters():
            rec[f"bwd/grad/{name}"] = _np(p.grad)
        rec["bwd/grad/x"] = _np(xg.grad)
        return rec


# --------------------------------------------------------------------------- chapter models


def _put_maps(rec, prefix, maps, consts, full_maps):
    for k, am in enumerate(maps, start=1):
        rows, probe = consts[k]
        am_t = am.detach()
        rec[f"{prefix}/am{k}/rows"] = _np(am_t[:, torch.from_numpy(rows), :])
        rec[f"{prefix}/am{k}/probe"] = _np(torch.matmul(am_t, probe))
        if full_maps:
            rec[f"{prefix}/am{k}/full"] = _np(am_t)


def case_chapter_models(
    seed: int,
    image_size: int = 8,
    z_dim: int = 20,
    batch: int = 4,
    full_maps: bool = False,
    intermediates: bool = False,
) -> dict[str, np.ndarray]:
    """The chapter's G and D (s = image_size), book init; one train-mode then one eval-mode forward each.

    `full_maps=True` adds the full attention maps (G's am2 alone is B x 1024 x 1024 floats);
    `intermediates=True` adds each top-level child's output (`.../act/<child>`).
    """
    with torch_determinism(seed):
        G, D = ts.init_chapter_models(z_dim=z_dim, image_size=image_size)
        z = torch.randn(batch, z_dim, 1, 1)
        images = torch.rand(batch, 1, 64, 64) * 2 - 1

        rec: dict[str, np.ndarray] = {}
        _put_state(rec, "G/state/", G)
        _put_state(rec, "D/state/", D)
        rec["input/z"] = _np(z)
        rec["input/images"] = _np(images)

        # attention map sizes: G at 16x16 and 32x32, D at 8x8 and 4x4 (independent of s)
        consts = {}
        for net, sides in (("G", (16, 32)), ("D", (8, 4))):
            consts[net] = {}
            for k, side in enumerate(sides, start=1):
                n = side * side
                rows = attention_rows_index(n)
                probe = torch.randn(n)
                consts[net][k] = (rows, probe)
                rec[f"const/{net}/am{k}/rows_index"] = rows
                rec[f"const/{net}/am{k}/probe"] = _np(probe)

        for net_name, net, inp in (("G", G, z), ("D", D, images)):
            acts: dict[str, torch.Tensor] = {}
            hooks = []
            if intermediates:
                for cname, child in net.named_children():
                    def hook(_m, _i, o, cname=cname):
                        acts[cname] = (o[0] if isinstance(o, tuple) else o).detach().clone()
                    hooks.append(child.register_forward_hook(hook))
            for mode in ("train", "eval"):
                net.train(mode == "train")
                acts.clear()
                with torch.no_grad():
                    out, am1, am2 = net(inp)
                rec[f"{net_name}/{mode}/out"] = _np(out)
                _put_maps(rec, f"{net_name}/{mode}", (am1, am2), consts[net_name], full_maps)
                if mode == "train":
                    _put_state(rec, f"{net_name}/train/state/", net, buffers_only=True)
                for cname, a in acts.items():
                    rec[f"{net_name}/{mode}/act/{cname}"] = _np(a)
            for h in hooks:
                h.remove()
        return rec


def case_chapter_train_step(
    seed: int,
    loss: str = "hinge",
    steps: int = 2,
    record: str = "compact",
    image_size: int = 8,
    z_dim: int = 20,
    batch: int = 4,
) -> dict[str, np.ndarray]:
    """`steps` iterations of the chapter's loop body from the book init (s = image_size).

    record: what is kept after each step (initial states, inputs, losses and D outputs always):
      'losses'  + buffers (SN u/v, BN running stats, num_batches_tracked);
      'compact' + full state_dicts, Adam exp_avg (== that step's gradient exactly, beta1 = 0)
                  and Adam step;
      'full'    + Adam exp_avg_sq (derivable from the exp_avg history, hence left out by default).
    """
    if record not in ("losses", "compact", "full"):
        raise ValueError(f"unknown record mode {record!r}")
    with torch_determinism(seed):
        G, D = ts.init_chapter_models(z_dim=z_dim, image_size=image_size)
        g_opt, d_opt = ts.make_optimizers(G, D)
        inputs = []
        for _ in range(steps):
            images = torch.rand(batch, 1, 64, 64) * 2 - 1
            z1 = torch.randn(batch, z_dim, 1, 1)
            z2 = torch.randn(batch, z_dim, 1, 1)
            inputs.append((images, z1, z2))

        rec: dict[str, np.ndarray] = {}
        _put_state(rec, "G/state/", G)
        _put_state(rec, "D/state/", D)
        G.train()
        D.train()
        g_names = {id(p): n for n, p in G.named_parameters()}
        d_names = {id(p): n for n, p in D.named_parameters()}
        for t, (images, z1, z2) in enumerate(inputs, start=1):
            p = f"step{t}"
            rec[f"{p}/input/images"] = _np(images)
            rec[f"{p}/input/z1"] = _np(z1)
            rec[f"{p}/input/z2"] = _np(z2)
            res = ts.chapter_train_step(G, D, g_opt, d_opt, images, z1, z2, loss=loss)
            rec[f"{p}/d_loss"] = _scalar(res["d_loss"])
            rec[f"{p}/g_loss"] = _scalar(res["g_loss"])
            for k in ("d_out_real", "d_out_fake", "g_d_out_fake"):
                rec[f"{p}/{k}"] = _np(res[k])
                rec[f"{p}/{k}_mean"] = _scalar(res[k].mean())
            _put_state(rec, f"{p}/G/state/", G, buffers_only=(record == "losses"))
            _put_state(rec, f"{p}/D/state/", D, buffers_only=(record == "losses"))
            if record == "losses":
                continue
            for net, opt, names in (("G", g_opt, g_names), ("D", d_opt, d_names)):
                steps_seen = set()
                for param, st in opt.state.items():
                    name = names[id(param)]
                    rec[f"{p}/{net}/adam/exp_avg/{name}"] = _np(st["exp_avg"])
                    if record == "full":
                        rec[f"{p}/{net}/adam/exp_avg_sq/{name}"] = _np(st["exp_avg_sq"])
                    steps_seen.add(float(st["step"]))
                assert len(steps_seen) == 1, steps_seen
                assert len(opt.state) == len(names), "a parameter got no gradient"
                rec[f"{p}/{net}/adam/step"] = np.asarray(steps_seen.pop(), np.float32)
        return rec


# name -> (function, kwargs) for every fixture file make_fixtures.py writes (seed 0)
CASES = {
    "sn_linear": (case_sn_linear, {}),
    "sn_conv2d": (case_sn_conv2d, {}),
    "sn_conv2d_n3": (case_sn_conv2d, {"n_power_iterations": 3}),
    "sn_conv_transpose2d": (case_sn_conv_transpose2d, {}),
    "sn_conv_transpose2d_z": (case_sn_conv_transpose2d_z, {}),
    "sn_embedding": (case_sn_embedding, {}),
    "self_attention_seed": (case_self_attention_seed, {}),
    "self_attention_seed_rect": (case_self_attention_seed_rect, {}),
    "self_attention_official": (case_self_attention_official, {}),
    "chapter_models": (case_chapter_models, {}),
    "chapter_train_step": (case_chapter_train_step, {}),
    "chapter_train_step_non_saturating": (
        case_chapter_train_step,
        {"loss": "non_saturating", "record": "losses"},
    ),
}


# --------------------------------------------------------------------------- ResNet SAGAN


def _resnet_models(resolution, width, num_classes, z_dim, gamma, attention=(2, 1)):
    """StudioGAN's SAGAN G and D (torch_resnet_sagan), attention after G's block
    ``attention[0]`` and D's block ``attention[1]`` (StudioGAN's CIFAR-10 config: 2, 1), the
    attention gates set to ``gamma`` so they matter."""
    from . import torch_resnet_sagan as tr

    G = tr.Generator(resolution, z_dim, width, num_classes, attn_g_loc=(attention[0],))
    D = tr.Discriminator(resolution, width, num_classes, attn_d_loc=(attention[1],))
    with torch.no_grad():
        for model in (G, D):
            for m in model.modules():
                if isinstance(m, tr.SelfAttention):
                    m.sigma.fill_(gamma)
    return G, D


def _advance(G, D, warmup: int, batch: int, resolution: int, z_dim: int, num_classes) -> None:
    """``warmup`` train-mode forwards of G and D on random inputs (no update): the spectral
    norms' u, v leave their random start and BN's running statistics move, so a loaded
    state is one a run could have."""
    with torch.no_grad():
        for _ in range(warmup):
            labels = (None if num_classes is None
                      else torch.randint(0, num_classes, (batch,), dtype=torch.int64))
            G.train()(torch.randn(batch, z_dim), labels)
            D.train()(torch.rand(batch, 3, resolution, resolution) * 2 - 1, labels)


def case_resnet_models(seed: int, resolution: int = 32, width: int = 4, num_classes=3,
                       z_dim: int = 16, batch: int = 4, gamma: float = 0.7, attention=(2, 1),
                       warmup: int = 2) -> dict[str, np.ndarray]:
    """StudioGAN's SAGAN G and D (ortho init, γ = ``gamma``, SN and BN state advanced by
    ``warmup`` train-mode forwards); one train-mode then one eval-mode forward each (G on z,
    y; D on images, y), with their attention maps (β, (B, N, N/4)): ``map<k>/rows`` (rows
    ``const/<net>/map<k>/rows_index``) and ``map<k>/probe`` (β · probe)."""
    with torch_determinism(seed):
        G, D = _resnet_models(resolution, width, num_classes, z_dim, gamma, attention)
        _advance(G, D, warmup, batch, resolution, z_dim, num_classes)
        z = torch.randn(batch, z_dim)
        images = torch.rand(batch, 3, resolution, resolution) * 2 - 1
        labels = None
        rec: dict[str, np.ndarray] = {}
        if num_classes is not None:
            labels = torch.randint(0, num_classes, (batch,), dtype=torch.int64)
            rec["input/labels"] = _np(labels)
        _put_state(rec, "G/state/", G)
        _put_state(rec, "D/state/", D)
        rec["input/z"] = _np(z)
        rec["input/images"] = _np(images)
        probes = {}
        for name, net, inp in (("G", G, z), ("D", D, images)):
            for mode in ("train", "eval"):
                net.train(mode == "train")
                with torch.no_grad():
                    out, maps = net(inp, labels, return_maps=True)
                rec[f"{name}/{mode}/out"] = _np(out)
                for k, beta in enumerate(maps, start=1):
                    if (name, k) not in probes:  # drawn at first use: (N rows, N/4 probe)
                        probes[name, k] = (attention_rows_index(beta.shape[1]),
                                           torch.randn(beta.shape[2]))
                        rec[f"const/{name}/map{k}/rows_index"] = probes[name, k][0]
                        rec[f"const/{name}/map{k}/probe"] = _np(probes[name, k][1])
                    rows, probe = probes[name, k]
                    rec[f"{name}/{mode}/map{k}/rows"] = _np(beta[:, torch.from_numpy(rows), :])
                    rec[f"{name}/{mode}/map{k}/probe"] = _np(torch.matmul(beta, probe))
                if mode == "train":
                    _put_state(rec, f"{name}/train/state/", net, buffers_only=True)
        return rec


def case_resnet_train_step(seed: int, resolution: int = 32, width: int = 4, num_classes: int = 3,
                           z_dim: int = 16, batch: int = 4, d_steps: int = 2, steps: int = 2,
                           ema_decay: float = 0.5, ema_start: int = 1, gamma: float = 0.7,
                           attention=(2, 1), warmup: int = 2) -> dict[str, np.ndarray]:
    """``steps`` full steps of StudioGAN's SAGAN in sagan-jax's order (torch_resnet_sagan.
    train_step): ``d_steps`` D updates (each its own real batch, noise and fake labels), one G
    update, then the generator's EMA (decay ``ema_decay``, a copy until ``ema_start``).
    Adam (β₁ = 0, β₂ = 0.999, eps 1e-6; lr G 2e-4, D 4e-4), hinge loss; SN and BN state
    advanced by ``warmup`` train-mode forwards first."""
    from . import torch_resnet_sagan as tr

    with torch_determinism(seed):
        G, D = _resnet_models(resolution, width, num_classes, z_dim, gamma, attention)
        _advance(G, D, warmup, batch, resolution, z_dim, num_classes)
        ema = _resnet_models(resolution, width, num_classes, z_dim, gamma, attention)[0]
        ema.load_state_dict(G.state_dict())
        g_opt, d_opt = tr.make_optimizers(G, D)
        rec: dict[str, np.ndarray] = {
            "config/d_steps": np.asarray(d_steps, np.int64),
            "config/ema_decay": np.asarray(ema_decay, np.float32),
            "config/ema_start": np.asarray(ema_start, np.int64),
        }
        _put_state(rec, "G/state/", G)
        _put_state(rec, "D/state/", D)
        inputs = []
        for _ in range(steps):
            reals = [(torch.rand(batch, 3, resolution, resolution) * 2 - 1,
                      torch.randint(0, num_classes, (batch,)), torch.randn(batch, z_dim),
                      torch.randint(0, num_classes, (batch,))) for _ in range(d_steps)]
            inputs.append((reals, torch.randn(batch, z_dim), torch.randint(0, num_classes, (batch,))))
        G.train()
        D.train()
        ema.eval()
        g_names = {id(p): n for n, p in G.named_parameters()}
        d_names = {id(p): n for n, p in D.named_parameters()}
        for t, (reals, z2, y2) in enumerate(inputs, start=1):
            p = f"step{t}"
            for key, index in (("images", 0), ("labels", 1), ("z1", 2), ("y1", 3)):
                rec[f"{p}/input/{key}"] = _np(torch.stack([r[index] for r in reals]))
            rec[f"{p}/input/z2"] = _np(z2)
            rec[f"{p}/input/y2"] = _np(y2)
            outs = tr.train_step(G, D, g_opt, d_opt, reals, z2, y2, ema=ema, step=t,
                                 ema_decay=ema_decay, ema_start=ema_start)
            for key, value in outs.items():
                rec[f"{p}/{key}"] = _scalar(value)
            _put_state(rec, f"{p}/G/state/", G)
            _put_state(rec, f"{p}/D/state/", D)
            _put_state(rec, f"{p}/EMA/state/", ema)
            for net, opt, names in (("G", g_opt, g_names), ("D", d_opt, d_names)):
                for param, st in opt.state.items():
                    rec[f"{p}/{net}/adam/exp_avg/{names[id(param)]}"] = _np(st["exp_avg"])
        return rec


def case_resnet_param_counts(seed: int, width: int = 64, num_classes: int = 1000
                             ) -> dict[str, np.ndarray]:
    """Trainable parameters of StudioGAN's SAGAN G and D at 32, 64 and 128 px (its widths,
    g_conv_dim = d_conv_dim = 64), conditional (``num_classes``) and not, and the
    attention placement of its configs (32: G 2, D 1; 64: G 3, D 1; 128: G 4, D 1)."""
    from . import torch_resnet_sagan as tr

    attention = {32: (2, 1), 64: (3, 1), 128: (4, 1)}
    rec: dict[str, np.ndarray] = {}
    with torch_determinism(seed):
        for resolution, (g_loc, d_loc) in attention.items():
            for label, classes in (("cond", num_classes), ("uncond", None)):
                G = tr.Generator(resolution, 128, width, classes, attn_g_loc=(g_loc,),
                                 init="pytorch")
                D = tr.Discriminator(resolution, width, classes, attn_d_loc=(d_loc,),
                                     init="pytorch")
                for name, net in (("G", G), ("D", D)):
                    count = sum(p.numel() for p in net.parameters())
                    rec[f"{resolution}/{label}/{name}"] = np.asarray(count, np.int64)
    return rec


CASES.update({
    "resnet_models": (case_resnet_models, {}),
    "resnet_models_uncond64": (case_resnet_models, {"resolution": 64, "num_classes": None,
                                                    "batch": 2, "attention": (3, 2)}),
    # 128 px at width 2: attention after G's and D's block 3 (8 channels, 32×32 and 16×16).
    "resnet_models_cond128": (case_resnet_models, {"resolution": 128, "width": 2, "batch": 2,
                                                   "attention": (3, 3)}),
    "resnet_train_step": (case_resnet_train_step, {}),
    "resnet_train_step128": (case_resnet_train_step, {"resolution": 128, "width": 2,
                                                      "batch": 2, "d_steps": 1, "steps": 1,
                                                      "attention": (3, 3)}),
    "resnet_param_counts": (case_resnet_param_counts, {}),
})
