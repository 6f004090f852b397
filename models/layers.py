"""Small layers shared by the backbones and decoders."""
import contextlib
import contextvars
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from models.upsample import ConvTranspose, window_slices

# flax's NHWC / HWIO convolution layout.
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                 out_spec=(0, 3, 1, 2))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated`, but 1x1 kernels and convolutions with an output map of at most
  2x2 are one matmul.

  XLA:CPU runs those outside its fast convolution kernels. A 1x1 kernel is a matmul over channels
  of the (strided) input; as a convolution its weight gradient contracts over batch and space
  after transposing both operands: forward + both gradients of ResNet-50's 1x1 64 -> 256 at
  200x336 took 4.9 s against 1.1 s as a dot (256 -> 64: 5.1 vs 0.6 s; the forward alone is as
  fast or faster; 2026-12-06, loaded 2-core box, interleaved). Small maps (ResNet's last stage and
  SSD's coarsest heads on 64x64 images): forward + backward of a 3x3 conv 512 -> 512 on a 2x2 map,
  batch 32, took 780 ms against 10 ms as an im2col matmul (a 1x1 output map: 33 vs 3 ms). From
  4x4 outputs up XLA's convolution is as fast or faster for larger kernels: the others are XLA's,
  but `_custom_grad_conv` where its inference takes Winograd or inside a loop body.
  """
  ones = (1,) * (lhs.ndim - 2)
  simple = (lhs.ndim == 4 and dimension_numbers == _NHWC and feature_group_count == 1
            and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones)
  if simple:
    (kh, kw), (sh, sw) = rhs.shape[:2], window_strides
    pads = (lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
            if isinstance(padding, str) else padding)
    x = jnp.pad(lhs, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    if (kh, kw) == (1, 1):
      return _matmul_over_positions(x[:, ::sh, ::sw], rhs[0, 0], precision)
    if max(ho, wo) <= 2:
      cols = jnp.concatenate(window_slices(x, (kh, kw), (sh, sw)), -1)
      return _matmul_over_positions(cols, rhs.reshape(-1, rhs.shape[-1]), precision)
    in_loop_body = _IN_LOOP_BODY.get()
    if in_loop_body or takes_winograd(x.shape, rhs.shape, (sh, sw), x.dtype):
      return _custom_grad_conv(x, rhs, (sh, sw), precision, in_loop_body)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul_over_positions(x, w, precision):
  """[n, h, w, c] x [c, d] as one [n * h * w, c] matmul.

  The weight gradient is then a dot contracting one leading axis of two matrices, which XLA:CPU
  runs without copying either. With the four-dimensional operand it copied the output gradient
  transposed first, fused with the elementwise ops before it: a 1x1 conv 128 -> 512 beside a
  256 -> 512 one at 100x168 (a bottleneck's last conv and its shortcut) took 674 ms forward and
  backward against 277 ms (2026-12-06, loaded 2-core box). The custom gradient is autodiff's
  with `_weight_grads_first`.
  """
  return jnp.dot(x.reshape(-1, x.shape[-1]), w, precision=precision).reshape(*x.shape[:-1], -1)


def _matmul_over_positions_fwd(x, w, precision):
  return _matmul_over_positions(x, w, precision), (x, w)


def _matmul_over_positions_bwd(precision, residuals, g):
  x, w = residuals
  rows, g_rows = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
  input_grad = jnp.dot(g_rows, w.T, precision=precision).reshape(x.shape).astype(x.dtype)
  weight_grad = jnp.dot(rows.T, g_rows, precision=precision).astype(w.dtype)
  return _weight_grads_first(input_grad, g, weight_grad), weight_grad


_matmul_over_positions.defvjp(_matmul_over_positions_fwd, _matmul_over_positions_bwd)


def _weight_grads_first(input_grad, g, weight_grad):
  """`input_grad`, made to depend on the layer's weight gradient and on its bias gradient (the sum
  of its output gradient `g` over all but the channels: the same reduction as autodiff's, which
  XLA's CSE then merges with it).

  The backward pass then has the layer's input and output gradient free once its input gradient
  moves on. Left alone, XLA:CPU's scheduler put the weight and bias gradients of ResNet-50-FPN's
  RPN and FPN layers at the end of the backward pass, so every P2-sized input and gradient they
  read stayed alive through it (Faster R-CNN 800x1344 batch 2, XLA's temporaries: 3.19 -> 3.10 GB
  for the 3x3 weight gradients, then 3.05 -> 2.89 with their bias gradients and 2.89 -> 2.75 with
  the 1x1 convolutions'; BENCHMARKS.md, ninth session). A data
  dependency is the hint that survives: XLA drops optimization barriers before scheduling. The
  zero product costs one multiply-add per element, fused with the gradient's producer; for a
  layer without bias the reduction is extra, one read of `g` (the train step was no slower).
  """
  bias_grad = jnp.sum(g, tuple(range(g.ndim - 1)))
  tie = weight_grad.reshape(-1)[0] + bias_grad[0]
  return input_grad + 0.0 * tie.astype(input_grad.dtype)


# Weight gradients. Until 2026-12-07 those of convolutions with 16-32 channels and up were kh * kw
# matmuls of shifted input slices: XLA:CPU's gradient convolutions then ran on YNNPACK and were
# 2-5x slower (FCN-8s's 32 -> 32 at 64x64 x16 100.6 / 32.6 ms). With convolutions on Eigen
# (configs/common.py's CPU_XLA_OPTIONS) XLA's own won at every batched shape (data + weight
# gradient, ms matmuls / XLA: that layer 50.9 / 20.0, 64 -> 64 at 32x32 x16 29.7 / 17.6; ResNet-18's
# 64 -> 64 at 16x16 x32 15.1 / 8.9; ResNet-50-FPN's 256 -> 256 at 200x336 x2 2316 / 2171) and tied
# end to end at one image (Faster R-CNN R50-FPN 800x1344 b1 train step 9.04 s both ways, its
# compile 18.5 -> 15.4 s with fewer kernels; with `_weight_grad`'s form also in the scanned
# stages' loop, 8.91 s and 14.8 s). FCN-8s trained at 45.0-51.1 img/s against 36.9-44.7
# (2026-12-07, 2-core box; BENCHMARKS.md, fourteenth session).


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _custom_grad_conv(x, w, strides, precision, in_loop_body):
  """A VALID NHWC / HWIO convolution: `_inference_conv` where no gradient is taken (inference),
  XLA's convolution where one is. Its gradients are jax's, or in a loop body
  (`convolutions_in_loop_body`) `_input_grad`'s and `_weight_grad`'s, each tied by
  `_weight_grads_first`.
  """
  return _inference_conv(x, w, strides, precision)


def _valid_conv(x, w, strides, precision):
  return lax.conv_general_dilated(x, w, strides, 'VALID', dimension_numbers=_NHWC,
                                  precision=precision)


def _inference_conv(x, w, strides, precision):
  """`_valid_conv` where no gradient is taken (the custom-gradient convolution's primal): by
  Winograd's minimal filtering where `takes_winograd`."""
  if takes_winograd(x.shape, w.shape, strides, x.dtype):
    return winograd_conv3x3(x, w, precision)
  return _valid_conv(x, w, strides, precision)


def takes_winograd(x_shape, w_shape, strides, dtype) -> bool:
  """Whether a VALID convolution of an NHWC input with an HWIO kernel runs by Winograd at
  inference: large stride-1 3x3 float32 convolutions on CPU."""
  positions = x_shape[0] * (x_shape[1] - w_shape[0] + 1) * (x_shape[2] - w_shape[1] + 1)
  return (tuple(strides) == (1, 1) and tuple(w_shape[:2]) == (3, 3) and dtype == jnp.float32
          and positions >= _WINOGRAD_MIN_POSITIONS and min(w_shape[2:]) >= _WINOGRAD_MIN_CHANNELS
          and jax.default_backend() == 'cpu')


# Output positions over the batch (the matmuls' rows). Below that they are too short: ResNet-50's
# last stage at 800x1344, batch 1 (25x42 positions, 512 channels) took 49 ms against 40 ms for
# XLA's convolution, and the 50x84 maps (layer3, P4) earned less than their transforms' compile:
# at 4,000 Faster R-CNN's eval step compiled in 3.3-3.5 s against 3.0-3.1 s at 16,000, the step
# 2.45-2.48 s both ways (2026-12-07, 2-core box). Mask R-CNN's mask head (100 RoIs of 14x14, 256
# channels) qualifies: 0.147 -> 0.069 s per conv's matmuls, its inference 3.59 -> 3.46 s.
_WINOGRAD_MIN_POSITIONS = 16000
# Narrower convolutions gain too little: with FCN-8s's 16 -> 32, 32 -> 32 and 32 -> 64 layers (64x64
# and 32x32 maps, batch 16) on Winograd its inference ran 164 against 162 img/s and compiled in
# 1.5 against 0.9 s. Since XLA's convolutions run on Eigen (configs/common.py), 64 channels gain
# nothing either: ResNet-50's layer1 3x3s (200x336) without Winograd, Faster R-CNN 800x1344
# inference in one process, interleaved, took 2.879 against 2.880 s a step at batch 1 and 5.44
# against 5.40 s at batch 2; FCN-8s's conv3_2 0.083 against 0.082 s, its compile 0.76 against
# 0.90 s (2026-12-07, 2-core box; BENCHMARKS.md, fifteenth session).
_WINOGRAD_MIN_CHANNELS = 128
# F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016):
# output tile Y = A^T [(G g G^T) * (B^T d B)] A for each 4x4 input tile d and 3x3 kernel g.
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)


def _winograd_bt(d0, d1, d2, d3):
  """B^T applied along one axis of the four strided row (or column) sets of the 4x4 tiles."""
  return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _winograd_at(m0, m1, m2, m3):
  """A^T applied along one axis: the tile's two outputs."""
  return [m0 + m1 + m2, m1 - m2 - m3]


def winograd_conv3x3(x, w, precision=None):
  """A VALID stride-1 3x3 NHWC / HWIO convolution as 16 matmuls over 2x2 output tiles: 2.25x fewer
  multiplies. XLA:CPU's convolution ran ResNet-50-FPN's 3x3 256 -> 256 convs on P2 (200x336) at
  0.49-0.60 s; these matmuls take 0.23 s, plus the tile transforms (inference at 800x1344, 2.97 ->
  2.55 s a batch-1 step; 2026-12-07, 2-core box). Same numbers to float32 rounding: torchvision
  parity at 800 px unchanged (P2 within 3e-6 relative, identical detections; BENCHMARKS.md,
  ninth session). The tiles take 4x the input's memory, so training keeps XLA's convolution.
  """
  n, h, wd, c = x.shape
  ho, wo = h - 2, wd - 2
  th, tw = -(-ho // 2), -(-wo // 2)  # Tiles along each axis; odd sizes pad one row / column.
  x = jnp.pad(x, ((0, 0), (0, 2 * th + 2 - h), (0, 2 * tw + 2 - wd), (0, 0)))
  # B^T along the rows, then along the columns, with the rows' result written out in between:
  # XLA:CPU fused both into one 16-operand concatenate whose code took ~0.5 s to compile per
  # convolution (0.1 s in two steps, the same run time; 2026-12-07, 2-core box).
  rows = lax.optimization_barrier(
      jnp.stack(_winograd_bt(*[x[:, r:r + 2 * th:2] for r in range(4)])))  # [4, n, th, w, c]
  tiles = jnp.stack(_winograd_bt(*[rows[:, :, :, s:s + 2 * tw:2] for s in range(4)]),
                    1).reshape(16, n * th * tw, c)
  kernels = jnp.einsum('ai,ijcd,bj->abcd', _WINOGRAD_G, w, _WINOGRAD_G,
                       precision=lax.Precision.HIGHEST).reshape(16, c, w.shape[-1])
  m = lax.dot_general(tiles, kernels, (((2,), (1,)), ((0,), (0,))), precision=precision)
  m = m.reshape(4, 4, n, th, tw, -1)
  y = jnp.stack([jnp.stack(_winograd_at(*r)) for r in _winograd_at(*m)])  # [2, 2, n, th, tw, d]
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, -1)
  return y[:, :ho, :wo]


def _custom_grad_conv_fwd(x, w, strides, precision, in_loop_body):
  del in_loop_body  # Only the backward differs.
  return _valid_conv(x, w, strides, precision), (x, w)


def _custom_grad_conv_bwd(strides, precision, in_loop_body, residuals, g):
  x, w = residuals
  if in_loop_body:
    input_grad = _input_grad(g, w, x.shape[1:3], strides, precision)
    weight_grad = _weight_grad(x, g, w.shape[:2], strides, precision)
  else:
    conv = functools.partial(_valid_conv, strides=strides, precision=precision)
    input_grad = jax.vjp(lambda x: conv(x, w), x)[1](g)[0]
    # The weight gradient of each half of the batch apart: XLA:CPU copies x and g transposed for
    # it, and on P2 at batch 2 the two copies (265 MiB, with the RPN conv's data gradient and
    # ReLU mask) were the train step's memory peak. Halved: Faster R-CNN 800x1344 batch 2, XLA's
    # temporaries 3.007 -> 2.931 GB, the step 19.05 -> 18.72 s (in one process, interleaved;
    # 2026-12-07, 2-core box).
    halves = [slice(0, len(x) // 2), slice(len(x) // 2, None)] if len(x) > 1 else [slice(None)]
    weight_grad = sum(jax.vjp(lambda w, h=h: conv(x[h], w), w)[1](g[h])[0] for h in halves)
  return _weight_grads_first(input_grad, g, weight_grad), weight_grad.astype(w.dtype)


def _input_grad(g, w, x_hw, strides, precision):
  """The gradient of a VALID convolution's input `x_hw` from its output gradient `g`: the
  stride-dilated `g` convolved with the kernel flipped in space, its channel axes swapped (jax's
  own transpose rule, but with the kernel in HWIO order). From jax's rule (the swap left in the
  convolution's dimension numbers), XLA:CPU inside a loop body (lax.scan over microbatches)
  ran that convolution without its fast kernels: forward and both gradients of a 3x3 256 -> 256
  conv on P2 (200x336) took 4.5-4.7 s per image inside a scan against 1.8-2.0 s outside; 1.8 s
  inside with this form (2026-12-06, quiet 2-core box)."""
  pads = [(k - 1, k - 1 + n - ((o - 1) * s + k))
          for k, n, o, s in zip(w.shape[:2], x_hw, g.shape[1:3], strides, strict=True)]
  kernel = jnp.flip(w, (0, 1)).swapaxes(2, 3)
  return lax.conv_general_dilated(g, kernel, (1, 1), pads, lhs_dilation=strides,
                                  dimension_numbers=_NHWC, precision=precision)


# True while a loop or branch body is traced (`convolutions_in_loop_body`).
_IN_LOOP_BODY = contextvars.ContextVar('detseg_convolutions_in_loop_body', default=False)


@contextlib.contextmanager
def convolutions_in_loop_body():
  """The convolutions traced inside are in a loop or branch body (a `lax.scan` or `lax.cond`:
  training/step.py's microbatches, models/resnet.py's scanned stages, Mask R-CNN's head
  chunks) and take the gradients that XLA:CPU runs fast there (`_custom_grad_conv`)."""
  token = _IN_LOOP_BODY.set(True)
  try:
    yield
  finally:
    _IN_LOOP_BODY.reset(token)


def in_loop_body(fn):
  """`fn`, traced in `convolutions_in_loop_body()`: for the body of a loop or branch."""
  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with convolutions_in_loop_body():
      return fn(*args, **kwargs)
  return traced


def _weight_grad(x, g, kernel_hw, strides, precision):
  """A VALID convolution's kernel gradient as a convolution of x's channels (the batch) with the
  output gradient (the kernel, dilated by the strides), contracting x's batch (the features).

  In loop bodies (with `_input_grad`): inside a while body XLA:CPU ran jax's gradient
  convolutions (their layouts in the dimension numbers) without its fast kernels: FCN-8s (128
  px, batch 16) trained at 3.1-3.2 img/s in 2 microbatches against 27.3-27.7 unsliced; with
  these forms 23.0-24.0 against 25.9. Written out in NHWC / HWIO, the weight gradient of a 3x3
  32 -> 32 conv at 64x64, batch 8, took 94 ms for two slices in a scan against 1036 ms
  (2026-12-07, 2-core box, nothing else running).
  """
  (kh, kw), xt, gt = kernel_hw, x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3)
  # Sums over batch and space in float32 also when computing in bfloat16.
  grad = lax.conv_general_dilated(xt, gt, (1, 1), 'VALID', rhs_dilation=strides,
                                  dimension_numbers=_NHWC, precision=precision,
                                  preferred_element_type=jnp.float32)
  return grad[:, :kh, :kw].transpose(1, 2, 0, 3)  # [c, kh, kw, d] -> HWIO.


_custom_grad_conv.defvjp(_custom_grad_conv_fwd, _custom_grad_conv_bwd)


# `nn.Conv` (same parameters and names) with the matmul fast paths above.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


class ConvParams(nn.Module):
  """The kernel and bias that `nn.Conv(features, kernel_size)` would create under this name, for
  layers that use them differently (`sibling_1x1_convs`)."""
  features: int
  kernel_size: tuple[int, ...]
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, in_features: int):
    kernel = self.param('kernel', self.kernel_init, (*self.kernel_size, in_features,
                                                     self.features))
    return kernel, self.param('bias', nn.initializers.zeros, (self.features,))


def sibling_1x1_convs(x, params, dtype=None):
  """Several 1x1 `Conv`s of one input, params [(kernel [1, 1, C, n_i], bias [n_i])], as one
  matmul -> [[..., n_i]].

  Apart, each sibling's input gradient is a map the size of the input and their sum a third:
  for the RPN's objectness and deltas convs on ResNet-50-FPN's P2 at 800x1344, batch 2, two
  131 MiB buffers at the train step's peak memory (BENCHMARKS.md, ninth session).
  """
  kernel = jnp.concatenate([k[0, 0] for k, _ in params], -1)
  bias = jnp.concatenate([b for _, b in params])
  x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=dtype)
  out = _matmul_over_positions(x, kernel, None) + bias
  return jnp.split(out, np.cumsum([len(b) for _, b in params])[:-1], -1)


class FrozenBatchNorm(nn.Module):
  """torchvision's FrozenBatchNorm2d: a fixed affine map from the running statistics.

  The variables are nn.BatchNorm's (params scale/bias, batch_stats mean/var), so weights and
  checkpoints carry over; no gradient reaches them (the optimizer's decay mask already spares
  scales and biases), and the arithmetic is torchvision's: x * (w / sqrt(var + eps)) + (b - mean *
  that).
  """
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (c,)).value
    var = self.variable('batch_stats', 'var', jnp.ones, (c,)).value
    scale, bias, mean, var = jax.lax.stop_gradient((scale, bias, mean, var))
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return (x * mul + (bias - mean * mul)).astype(self.dtype or x.dtype)


def batch_norm(train: bool, axis_name: str | None, dtype: Any = None, frozen: bool = False,
               epsilon: float = 1e-5):
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5).

  `axis_name` is None or the pmap axis name, so pmapped batch statistics equal one device's.
  `frozen`: `FrozenBatchNorm` (the same variables), whatever `train`.
  """
  if frozen:
    return functools.partial(FrozenBatchNorm, epsilon=epsilon, dtype=dtype)
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=epsilon, axis_name=axis_name, dtype=dtype)


class ConvBNReLU(nn.Module):
  """3x3 (or `kernel_size`) SAME conv -> BatchNorm -> ReLU.

  `transpose=True` uses a stride-1 `ConvTranspose` (DeconvNet's "deconvolution" layers); the
  parameter shapes are the same as the conv's.
  """
  features: int
  kernel_size: int = 3
  transpose: bool = False
  dtype: Any = None
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    k = self.kernel_size
    if self.transpose:
      x = ConvTranspose(self.features, k, 1, k // 2, dtype=self.dtype, name='conv')(x)
    else:
      x = Conv(self.features, (k, k), padding='SAME', dtype=self.dtype, name='conv')(x)
    x = batch_norm(train, self.bn_axis_name, self.dtype)(name='bn')(x)
    return nn.relu(x)


class Dropout(nn.Module):
  """flax's nn.Dropout, but its masks do not depend on how the batch is split over devices.

  Under pmap (`axis_name` set) each device draws the mask of the whole batch, [devices x local
  rows, ...], and keeps its own rows, so a pmapped step drops the same units as one device or
  sharded jit, where the batch is one array. x's leading axis must follow the batch's order.
  """
  rate: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    if self.rate >= 1.0:
      return jnp.zeros_like(x)
    keep, key = 1.0 - self.rate, self.make_rng('dropout')
    if self.axis_name is None:
      mask = jax.random.bernoulli(key, keep, x.shape)
    else:
      rows = len(x)
      mask = jax.random.bernoulli(key, keep, (lax.axis_size(self.axis_name) * rows,) + x.shape[1:])
      mask = lax.dynamic_slice_in_dim(mask, lax.axis_index(self.axis_name) * rows, rows)
    return lax.select(mask, x / keep, jnp.zeros_like(x))


class RegressionHead(nn.Module):
  """Flatten -> Dense(hidden) -> ReLU -> dropout -> Dense(outputs).

  Flattening, not global pooling: the spatial layout of the features is what says *where*
  (the fully connected layers of OverFeat's box regressor and of DeepPose).
  """
  outputs: int
  hidden: int = 256
  dropout_rate: float = 0.0
  dtype: Any = None
  axis_name: str | None = None  # The pmap axis, for Dropout.

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='hidden')(x.reshape(len(x), -1)))
    x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
    return nn.Dense(self.outputs, dtype=self.dtype, name='out')(x).astype(jax.numpy.float32)


def inside_extent(hw: tuple[int, int], extent, stride: int = 1):
  """[B, h, w] bool: the cells of an h x w map at `stride` that lie within each image's
  `extent` [B, 2] (its size in input pixels), i.e. the first ceil(extent / stride) per axis."""
  cells = -(-jnp.asarray(extent, jnp.int32) // stride)
  return ((jnp.arange(hw[0])[None, :, None] < cells[:, 0, None, None])
          & (jnp.arange(hw[1])[None, None, :] < cells[:, 1, None, None]))


def zero_beyond(x, extent, stride: int = 1):
  """x [B, h, w, C] at `stride` with the cells beyond each image's `extent` set to 0 (x itself
  when `extent` is None): a convolution reading across that edge then sees the zero padding it
  would see on the image alone, padded to `extent`."""
  if extent is None:
    return x
  return jnp.where(inside_extent(x.shape[1:3], extent, stride)[..., None], x, 0).astype(x.dtype)
