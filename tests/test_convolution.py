"""Tests for sagan_jax.ops.convolution: PyTorch-semantics conv2d / conv_transpose2d.

Tolerance: <= 1e-5 absolute, float32, for values and gradients (w.r.t. x and the
kernel, of ``sum(y * r)``): 'gemm' and 'auto' against 'xla' for every case, and 'auto'
and 'xla' against the live PyTorch functions when torch is importable (those tests
skip otherwise). Inputs are drawn in [-1, 1], kernels with scale 0.2, and r scaled by
the number of terms each kernel-gradient entry sums, so values and gradients are O(1)
and the bound is strict. The cases are the chapter's layers with batch and channels
shrunk, plus odd geometries.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.ops import conv2d, conv_transpose2d
from sagan_jax.ops import convolution

ATOL = 1e-5

# (name, input (H, W, Cin), Cout, kernel (kh, kw), stride, padding[, output_padding])
# The chapter's layers with batch and channels shrunk, then odd geometries.
CONV_T_CASES = [
    ('g_first_k4s1p0', (1, 1, 5), 8, (4, 4), 1, 0, 0),
    ('g_4to8', (4, 4, 8), 6, (4, 4), 2, 1, 0),
    ('g_8to16', (8, 8, 6), 4, (4, 4), 2, 1, 0),
    ('g_16to32', (16, 16, 4), 3, (4, 4), 2, 1, 0),
    ('g_last_to1ch', (8, 8, 4), 1, (4, 4), 2, 1, 0),
    ('nonsquare_kernel', (5, 6, 3), 2, (3, 2), 2, 1, 0),
    ('stride3', (4, 5, 2), 3, (4, 4), 3, 1, 0),
    ('stride3_kernel2', (3, 3, 2), 2, (2, 2), 3, 0, 0),
    ('pad0', (3, 4, 2), 3, (3, 3), 2, 0, 0),
    ('pad2', (5, 5, 2), 3, (4, 4), 2, 2, 0),
    ('pad_exceeds_kernel', (6, 6, 2), 2, (2, 2), 1, 1, 0),
    ('output_padding1', (4, 5, 3), 2, (3, 3), 2, 1, 1),
    ('output_padding_beyond_taps', (3, 3, 2), 2, (1, 1), 3, 0, 2),
    ('pairs', (4, 6, 2), 3, (3, 4), (2, 3), (1, 0), (1, 2)),
    ('stride1_pad1', (5, 4, 3), 2, (3, 3), 1, 1, 0),
]

CONV_CASES = [
    ('d_first_1ch', (16, 16, 1), 4, (4, 4), 2, 1),
    ('d_16to8', (16, 16, 3), 6, (4, 4), 2, 1),
    ('d_8to4', (8, 8, 6), 8, (4, 4), 2, 1),
    ('d_4to2', (4, 4, 8), 5, (4, 4), 2, 1),
    ('d_last_k4s1p0', (4, 4, 8), 1, (4, 4), 1, 0),
    ('nonsquare_kernel', (6, 7, 3), 2, (3, 2), 2, 1),
    ('stride3', (10, 9, 2), 3, (4, 4), 3, 1),
    ('stride3_kernel2', (8, 8, 2), 2, (2, 2), 3, 0),
    ('pad0_uneven', (7, 6, 2), 3, (3, 3), 2, 0),
    ('pad2', (5, 5, 2), 3, (4, 4), 2, 2),
    ('pad_exceeds_kernel', (3, 3, 2), 2, (1, 1), 1, 2),
    ('pairs', (7, 9, 2), 3, (3, 4), (2, 3), (1, 0)),
    ('stride1_pad1', (5, 4, 3), 2, (3, 3), 1, 1),
]

BATCH = 2


def _inputs(in_shape, cout, ksize, seed):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (BATCH, *in_shape)).astype(np.float32)
  kernel = (0.2 * rng.standard_normal((*ksize, in_shape[2], cout))).astype(np.float32)
  return x, kernel


def _cotangent(x, y_shape, seed):
  """r (NHWC, like y) for L = sum(y * r).

  Each kernel-gradient entry sums x * r over the positions of the smaller side; r is
  scaled by 3 / sqrt(that count) so the sum stays O(1) and the absolute tolerance stays
  as strict as it reads.
  """
  summands = min(x.shape[0] * x.shape[1] * x.shape[2], y_shape[0] * y_shape[1] * y_shape[2])
  r = np.random.default_rng(seed).uniform(-1, 1, y_shape)
  return (r * min(1.0, 3.0 / np.sqrt(summands))).astype(np.float32)


def _values_and_grads(fns, x, kernel, r):
  """[(y, (dL/dx, dL/dkernel))] of L = sum(fn(x, kernel) * r) for each fn, in one jit."""

  @jax.jit
  def run(x, kernel, r):
    results = []
    for fn in fns:
      y, vjp = jax.vjp(fn, x, kernel)
      results.append((y, vjp(r)))
    return results

  return run(x, kernel, r)


def _assert_close(actual, expected):
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.shape == e.shape
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=ATOL)


def _conv_t(case, implementation):
  _, _, _, _, stride, padding, output_padding = case
  return functools.partial(conv_transpose2d, stride=stride, padding=padding,
                           output_padding=output_padding, implementation=implementation)


def _conv(case, implementation):
  _, _, _, _, stride, padding = case
  return functools.partial(conv2d, stride=stride, padding=padding,
                           implementation=implementation)


def _torch_nchw(a):
  import torch  # pylint: disable=import-outside-toplevel
  return torch.tensor(np.asarray(a).transpose(0, 3, 1, 2), requires_grad=True)


@functools.lru_cache(maxsize=None)
def _case_results(op, name):
  """Inputs and the values/gradients of all three paths for one case, computed once.

  The 'xla' comparison and the torch comparison of a case share them, and the three
  paths compile as one program: compilation dominates these tests' time.
  """
  case, make = (({c[0]: c for c in CONV_CASES}[name], _conv) if op == 'conv2d' else
                ({c[0]: c for c in CONV_T_CASES}[name], _conv_t))
  x, kernel = _inputs(case[1], case[2], case[3], seed=0)
  r = _cotangent(x, jax.eval_shape(make(case, 'xla'), x, kernel).shape, seed=1)
  results = _values_and_grads(tuple(make(case, impl) for impl in ('xla', 'gemm', 'auto')),
                              x, kernel, r)
  return case, x, kernel, r, dict(zip(('xla', 'gemm', 'auto'), results))


# ---------------------------------------------------------------- vs the 'xla' path


@pytest.mark.parametrize('name', [c[0] for c in CONV_T_CASES])
def test_conv_transpose2d_matches_xla(name):
  *_, results = _case_results('conv_transpose2d', name)
  _assert_close(results['gemm'], results['xla'])
  _assert_close(results['auto'], results['xla'])


@pytest.mark.parametrize('name', [c[0] for c in CONV_CASES])
def test_conv2d_matches_xla(name):
  *_, results = _case_results('conv2d', name)
  _assert_close(results['gemm'], results['xla'])
  _assert_close(results['auto'], results['xla'])


@pytest.mark.parametrize('op', ['conv2d', 'conv_transpose2d'])
def test_batch_slicing_matches(monkeypatch, op):
  # The chapter's sizes are processed in batch slices (lax.map/scan); at test sizes the
  # heuristic picks one slice, so force several.
  monkeypatch.setattr(convolution, '_num_chunks', lambda *args: 2)
  case, make = (CONV_CASES[1], _conv) if op == 'conv2d' else (CONV_T_CASES[3], _conv_t)
  in_shape = case[1]
  rng = np.random.default_rng(2)
  x = rng.uniform(-1, 1, (4, *in_shape)).astype(np.float32)
  kernel = (0.2 * rng.standard_normal((*case[3], in_shape[2], case[2]))).astype(np.float32)
  r = _cotangent(x, jax.eval_shape(make(case, 'xla'), x, kernel).shape, seed=3)
  expected, actual = _values_and_grads((make(case, 'xla'), make(case, 'gemm')), x, kernel, r)
  _assert_close(actual, expected)


def test_slice_count_divides_batch_and_bounds_im2col():
  # The generator's 16x16x128 -> 32x32x64 layer: 67 MB of im2col at batch 64 -> 16
  # slices of 4 MiB; tiny layers stay whole; any batch size gets a divisor.
  assert convolution._num_chunks(64, (16, 16), (2, 2, 256, 128), jnp.float32) == 16
  assert convolution._num_chunks(64, (1, 1), (4, 4, 512, 20), jnp.float32) == 1
  for batch in (1, 7, 30, 64, 96):
    assert batch % convolution._num_chunks(batch, (16, 16), (2, 2, 256, 128),
                                           jnp.float32) == 0


# ---------------------------------------------------------------- vs PyTorch, live


@pytest.mark.parametrize('name', [c[0] for c in CONV_T_CASES])
def test_conv_transpose2d_matches_torch(name):
  torch = pytest.importorskip('torch')
  case, x, kernel, r, results = _case_results('conv_transpose2d', name)
  _, _, _, _, stride, padding, output_padding = case
  xt = _torch_nchw(x)
  wt = torch.tensor(kernel.transpose(2, 3, 0, 1), requires_grad=True)  # (I, O, kh, kw)
  yt = torch.nn.functional.conv_transpose2d(xt, wt, stride=stride, padding=padding,
                                            output_padding=output_padding)
  gxt, gwt = torch.autograd.grad((yt * torch.tensor(r.transpose(0, 3, 1, 2))).sum(),
                                 (xt, wt))
  expected = (yt.detach().numpy().transpose(0, 2, 3, 1),
              (gxt.numpy().transpose(0, 2, 3, 1), gwt.numpy().transpose(2, 3, 0, 1)))
  _assert_close(results['auto'], expected)
  _assert_close(results['xla'], expected)


@pytest.mark.parametrize('name', [c[0] for c in CONV_CASES])
def test_conv2d_matches_torch(name):
  torch = pytest.importorskip('torch')
  case, x, kernel, r, results = _case_results('conv2d', name)
  _, _, _, _, stride, padding = case
  xt = _torch_nchw(x)
  wt = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)  # (O, I, kh, kw)
  yt = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
  gxt, gwt = torch.autograd.grad((yt * torch.tensor(r.transpose(0, 3, 1, 2))).sum(),
                                 (xt, wt))
  expected = (yt.detach().numpy().transpose(0, 2, 3, 1),
              (gxt.numpy().transpose(0, 2, 3, 1), gwt.numpy().transpose(2, 3, 1, 0)))
  _assert_close(results['auto'], expected)
  _assert_close(results['xla'], expected)


# ---------------------------------------------------------------- transformations


@pytest.mark.parametrize('implementation', ['gemm', 'xla'])
def test_output_shapes_follow_torch_formulas(implementation):
  x = jax.ShapeDtypeStruct((3, 7, 9, 2), jnp.float32)
  k = jax.ShapeDtypeStruct((4, 3, 2, 5), jnp.float32)
  conv = functools.partial(conv2d, stride=(2, 3), padding=(1, 2),
                           implementation=implementation)
  conv_t = functools.partial(conv_transpose2d, stride=(2, 3), padding=(1, 2),
                             output_padding=(1, 2), implementation=implementation)
  # (H + 2p - k) // s + 1 and (H - 1) * s - 2p + k + output_padding.
  assert jax.eval_shape(conv, x, k).shape == (3, 3, 4, 5)
  assert jax.eval_shape(conv_t, x, k).shape == (3, 15, 25, 5)


def test_auto_lowers_to_gemm_on_cpu_under_grad():
  # `platform_dependent` must resolve at lowering, also inside the VJP: on CPU no
  # convolution (whose kernel gradient is the slow op) may reach the compiled program.
  if jax.default_backend() != 'cpu':
    pytest.skip('checks the CPU lowering')
  x = jnp.ones((2, 8, 8, 3))
  kt = jnp.ones((4, 4, 3, 2))
  kc = jnp.ones((4, 4, 2, 2))

  def loss(x, kt, kc):
    y = conv_transpose2d(x, kt, stride=2, padding=1)
    return jnp.sum(conv2d(y, kc, stride=2, padding=1) ** 2)

  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, kt, kc).as_text(dialect='hlo')
  assert 'convolution(' not in hlo
  hlo_xla = jax.jit(jax.grad(lambda x, k: jnp.sum(
      conv2d(x, k, stride=2, padding=1, implementation='xla')))).lower(x, kt).as_text(
          dialect='hlo')
  assert 'convolution(' in hlo_xla


def _lowers_to_xla_convolution(x_shape, k_shape) -> bool:
  x, k = jnp.ones(x_shape), jnp.ones(k_shape)
  pad = k.shape[0] // 2 if k.shape[0] < x.shape[1] else 0
  hlo = jax.jit(jax.grad(lambda x, k: jnp.sum(conv2d(x, k, padding=pad) ** 2),
                         argnums=(0, 1))).lower(x, k).as_text(dialect='hlo')
  return 'convolution(' in hlo


def test_auto_picks_the_convolution_per_layer():
  # The per-layer choice (`_cpu_prefers_gemm`), forward and both gradients: XLA's
  # convolution for stride-1 layers on every backend, except on CPU the GEMM path for
  # few output positions (<= 64) with many channels (in x out >= 2^19), for an image's few
  # input channels (<= 4) into >= 8 outputs, and for a kernel covering its whole padded
  # input (one matrix product).
  assert _lowers_to_xla_convolution((2, 8, 8, 3), (3, 3, 3, 2))  # 2 output channels
  assert _lowers_to_xla_convolution((1, 32, 32, 32), (3, 3, 32, 32))
  assert _lowers_to_xla_convolution((1, 16, 16, 512), (3, 3, 512, 1024))  # 256 positions
  assert _lowers_to_xla_convolution((1, 8, 8, 256), (3, 3, 256, 1024))  # 2^18 channels
  assert _lowers_to_xla_convolution((1, 32, 32, 128), (3, 3, 128, 3))  # 3 output channels
  on_cpu = jax.default_backend() == 'cpu'
  assert _lowers_to_xla_convolution((1, 8, 8, 512), (3, 3, 512, 1024)) != on_cpu  # 2^19
  assert _lowers_to_xla_convolution((2, 8, 8, 3), (1, 1, 3, 8)) != on_cpu  # RGB in
  assert _lowers_to_xla_convolution((2, 8, 8, 3), (8, 8, 3, 1)) != on_cpu


@pytest.mark.parametrize('op', ['conv2d', 'conv_transpose2d'])
def test_vmap_matches_loop(op):
  fn = (functools.partial(conv2d, stride=2, padding=1) if op == 'conv2d' else
        functools.partial(conv_transpose2d, stride=2, padding=1))
  rng = np.random.default_rng(8)
  xs = rng.uniform(-1, 1, (3, BATCH, 6, 6, 2)).astype(np.float32)
  ks = (0.2 * rng.standard_normal((3, 4, 4, 2, 3))).astype(np.float32)

  def loss(x, k):
    return jnp.sum(fn(x, k) ** 2)

  # Per-example values and gradients, vmapped over both operands, vs a Python loop.
  ys = jax.jit(jax.vmap(fn))(xs, ks)
  grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(xs, ks)
  single = jax.jit(lambda x, k: (fn(x, k), jax.grad(loss, argnums=(0, 1))(x, k)))
  for i in range(3):
    _assert_close((ys[i], grads[0][i], grads[1][i]), single(xs[i], ks[i]))
  # vmap over x only (shared kernel).
  ys_shared = jax.jit(jax.vmap(fn, in_axes=(0, None)))(xs, ks[0])
  _assert_close(ys_shared, jnp.stack([single(xs[i], ks[0])[0] for i in range(3)]))


def test_scan_of_conv_stack_matches_unrolled():
  rng = np.random.default_rng(9)
  x = rng.uniform(-1, 1, (BATCH, 5, 5, 3)).astype(np.float32)
  kts = (0.2 * rng.standard_normal((4, 4, 4, 3, 3))).astype(np.float32)
  kcs = (0.2 * rng.standard_normal((4, 4, 4, 3, 3))).astype(np.float32)

  def block(h, kt, kc, implementation):
    up = conv_transpose2d(h, kt, stride=2, padding=1, implementation=implementation)
    return jnp.tanh(conv2d(up, kc, stride=2, padding=1, implementation=implementation))

  def scanned(x, kts, kcs):
    h, _ = jax.lax.scan(lambda h, k: (block(h, *k, 'auto'), None), x, (kts, kcs))
    return jnp.sum(h ** 2)

  def unrolled(x, kts, kcs):
    for i in range(kts.shape[0]):
      x = block(x, kts[i], kcs[i], 'xla')
    return jnp.sum(x ** 2)

  grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2))
  _assert_close(jax.jit(grad(scanned))(x, kts, kcs), jax.jit(grad(unrolled))(x, kts, kcs))


@pytest.mark.parametrize('implementation', ['gemm', 'xla'])
def test_bfloat16_runs_and_tracks_float32(implementation):
  x, kernel = _inputs((8, 8, 4), 3, (4, 4), seed=10)
  xb, kb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16)
  for fn in (functools.partial(conv_transpose2d, stride=2, padding=1),
             functools.partial(conv2d, stride=2, padding=1)):
    fn = functools.partial(fn, implementation=implementation)
    y = jax.jit(fn)(xb, kb)
    gx, gk = jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32)),
                              argnums=(0, 1)))(xb, kb)
    assert y.dtype == gx.dtype == gk.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), jax.jit(fn)(x, kernel), atol=0.05)
    # Mixed operands promote, as jnp does: bfloat16 x with a float32 kernel -> float32.
    assert jax.eval_shape(fn, xb, kernel).dtype == jnp.float32


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize('call, message', [
    (lambda: conv2d(jnp.zeros((4, 4, 3)), jnp.zeros((3, 3, 3, 2))),
     r'x must be 4-D .* got shape \(4, 4, 3\)'),
    (lambda: conv_transpose2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 3))),
     r'kernel must be 4-D .* got shape \(3, 3, 3\)'),
    (lambda: conv2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 2, 5))),
     r'x has 3 channels but kernel expects 2 \(x shape \(1, 4, 4, 3\), kernel shape '
     r'\(3, 3, 2, 5\)\)'),
    (lambda: conv_transpose2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 4, 5))),
     r'x has 3 channels but kernel expects 4'),
    (lambda: conv2d(jnp.zeros((1, 2, 2, 1)), jnp.zeros((5, 5, 1, 1)), padding=1),
     r'padded input \(4, 4\) is smaller than the kernel \(5, 5\).*empty'),
    (lambda: conv_transpose2d(jnp.zeros((1, 1, 1, 1)), jnp.zeros((2, 2, 1, 1)),
                              padding=1),
     r'output size \(0, 0\) is not positive .*x shape \(1, 1, 1, 1\)'),
    (lambda: conv_transpose2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), stride=2,
                              output_padding=2),
     r'output_padding \(2, 2\) must be >= 0 and smaller than stride \(2, 2\)'),
    (lambda: conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), stride=0),
     r'stride must be >= 1'),
    (lambda: conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), padding=(1, 2, 3)),
     r"padding must be an int, a pair, \(\(lo, hi\), \(lo, hi\)\), 'SAME' or 'VALID'"),
    (lambda: conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), padding='FULL'),
     r"padding must be .*'SAME' or 'VALID', got 'FULL'"),
    (lambda: conv_transpose2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), stride=2,
                              padding='SAME', output_padding=1),
     r"output_padding must be 0 with padding 'SAME'"),
    (lambda: conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)),
                    implementation='cudnn'),
     r"implementation must be one of \('auto', 'xla', 'gemm'\)"),
])
def test_bad_input_raises_value_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()


# ---------------------------------------------------------------- forward mode


FORWARD_CASES = [('conv2d', CONV_CASES[1]), ('conv2d', CONV_CASES[4]),
                 ('conv_transpose2d', CONV_T_CASES[1]), ('conv_transpose2d', CONV_T_CASES[11])]


def _op(op, case, implementation):
  return (_conv if op == 'conv2d' else _conv_t)(case, implementation)


@pytest.mark.parametrize('op, case', FORWARD_CASES, ids=[f'{o}_{c[0]}' for o, c in FORWARD_CASES])
@pytest.mark.parametrize('given', ['both', 'x', 'kernel'])
def test_jvp_matches_xla(op, case, given, monkeypatch):
  """jax.jvp through the GEMM path (batch slices forced, so the loop is exercised) equals
  the 'xla' path's, for tangents in x, the kernel or both (the other a symbolic zero)."""
  monkeypatch.setattr(convolution, '_num_chunks', lambda *args: 2)
  x, kernel = _inputs(case[1], case[2], case[3], seed=4)
  dx, dkernel = _inputs(case[1], case[2], case[3], seed=5)

  def jvp(implementation, x, kernel, dx, dkernel):
    fn = _op(op, case, implementation)
    if given == 'x':
      return jax.jvp(lambda x: fn(x, kernel), (x,), (dx,))
    if given == 'kernel':
      return jax.jvp(lambda k: fn(x, k), (kernel,), (dkernel,))
    return jax.jvp(fn, (x, kernel), (dx, dkernel))

  got = jax.jit(functools.partial(jvp, 'gemm'))(x, kernel, dx, dkernel)
  want = jax.jit(functools.partial(jvp, 'xla'))(x, kernel, dx, dkernel)
  _assert_close(got, want)


@pytest.mark.parametrize('op, case', FORWARD_CASES[::2], ids=['conv2d', 'conv_transpose2d'])
def test_jvp_matches_finite_differences_in_float64(op, case):
  """The tangent against a central difference, in float64: with step h = 1e-4 the
  truncation error is O(h²·|y'''|) = 0 (the op is bilinear: the difference is exact up
  to rounding, ~eps64·|y|/h ≈ 1e-12), so 1e-9 is a strict bound."""
  with jax.enable_x64():
    x, kernel = (jnp.asarray(a, jnp.float64) for a in _inputs(case[1], case[2], case[3], 6))
    dx, dkernel = (jnp.asarray(a, jnp.float64) for a in _inputs(case[1], case[2], case[3], 7))
    fn = jax.jit(_op(op, case, 'gemm'))
    _, tangent = jax.jit(lambda *a: jax.jvp(fn, a[:2], a[2:]))(x, kernel, dx, dkernel)
    h = 1e-4
    difference = (fn(x + h * dx, kernel + h * dkernel) - fn(x - h * dx, kernel - h * dkernel))
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(difference / (2 * h)),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize('op', ['conv2d', 'conv_transpose2d'])
def test_jacfwd_linearize_and_hessian_vector_products_match_xla(op, monkeypatch):
  monkeypatch.setattr(convolution, '_num_chunks', lambda *args: 2)
  case = CONV_CASES[1] if op == 'conv2d' else CONV_T_CASES[1]
  x, kernel = _inputs(case[1], case[2], case[3], seed=8)
  dx, dkernel = _inputs(case[1], case[2], case[3], seed=9)

  def transforms(implementation):
    fn = _op(op, case, implementation)
    loss = lambda x, k: jnp.sum(jnp.tanh(fn(x, k)))  # curved, so the HVP is not 0
    _, linear = jax.linearize(fn, x, kernel)
    return {
        'jacfwd': jax.jacfwd(loss, argnums=(0, 1))(x, kernel),
        'linearize': linear(dx, dkernel),
        'hvp': jax.jvp(jax.grad(loss, argnums=(0, 1)), (x, kernel), (dx, dkernel))[1],
        'grad_of_grad': jax.grad(lambda x: jnp.sum(jax.grad(loss, 1)(x, kernel) ** 2))(x),
    }

  got = jax.jit(lambda: transforms('gemm'))()
  want = jax.jit(lambda: transforms('xla'))()
  for name in want:
    for a, e in zip(jax.tree.leaves(got[name]), jax.tree.leaves(want[name])):
      # Second derivatives reach O(100) here (grad-of-grad sums squared gradients); both
      # paths are float32 sums of ~100 terms in different orders, ~1e-6 of the largest
      # entry apart (each within that of a float64 reference), so the bound scales with it.
      scale = max(1.0, float(np.max(np.abs(e))))
      np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=ATOL * scale,
                                 err_msg=name)


# ---------------------------------------------------------------- Flax's padding strings


@pytest.mark.parametrize('mode', ['SAME', 'VALID'])
@pytest.mark.parametrize('kernel_size, stride, size', [(3, 1, 7), (4, 2, 8), (4, 2, 7),
                                                       (2, 3, 7), (5, 2, 9)])
def test_conv2d_padding_strings_match_lax(mode, kernel_size, stride, size):
  """'SAME'/'VALID' pad exactly as lax (Flax's nn.Conv): asymmetric when the total is odd."""
  rng = np.random.default_rng(10)
  x = rng.uniform(-1, 1, (2, size, size + 1, 3)).astype(np.float32)
  kernel = rng.uniform(-1, 1, (kernel_size, kernel_size, 3, 2)).astype(np.float32)
  want = jax.lax.conv_general_dilated(x, kernel, (stride, stride), mode,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  for implementation in ('gemm', 'xla'):
    got = conv2d(x, kernel, stride=stride, padding=mode, implementation=implementation)
    _assert_close(got, want)


@pytest.mark.parametrize('mode', ['SAME', 'VALID'])
@pytest.mark.parametrize('kernel_size, stride', [(4, 2), (3, 2), (3, 1), (2, 3), (5, 2)])
def test_conv_transpose2d_padding_strings_give_flax_sizes(mode, kernel_size, stride):
  """'SAME': H·s outputs; 'VALID': (H−1)·s + max(k, s), the output sizes of Flax's
  nn.ConvTranspose; the values are PyTorch's for the equivalent integer padding."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(11).uniform(-1, 1, (1, 5, 6, 2)).astype(np.float32)
  kernel = np.ones((kernel_size, kernel_size, 2, 3), np.float32)
  flax_conv = nn.ConvTranspose(3, (kernel_size, kernel_size), (stride, stride), mode)
  want_shape = jax.eval_shape(lambda: flax_conv.init_with_output(jax.random.key(0), x)[0]).shape
  padding, output_padding = convolution.conv_transpose_padding(
      mode, 0, (kernel_size, kernel_size), (stride, stride))
  for implementation in ('gemm', 'xla'):
    got = conv_transpose2d(x, kernel, stride=stride, padding=mode, implementation=implementation)
    assert got.shape == want_shape
    explicit = conv_transpose2d(x, kernel, stride=stride, padding=padding,
                                output_padding=output_padding, implementation='xla')
    _assert_close(got, explicit)
  if mode == 'SAME' and (kernel_size, stride) == (4, 2):
    assert (padding, output_padding) == ((1, 1), (0, 0))  # the chapter's k4 s2 p1
