"""In-network upsampling (CS231n lecture 11): unpooling, max unpooling and transpose convolution.

Arrays are NHWC. `window`, `stride`, `factor`, `kernel_size` and friends take an int or an
(h, w) pair. Pooling is VALID (no padding): an H x W map pools to ((H - k) // s + 1, ...).

A pooling "switch" is the flat index `i * window_w + j` of the maximum inside its window (row i,
column j), the first maximum on ties, as in the lecture's "remember which element was max".
"""
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

IntOrPair = int | Sequence[int]
UPSAMPLE_KINDS = ('nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv', 'resize_conv')


def _pair(v: IntOrPair) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def depth_to_space(x: jax.Array, block: IntOrPair) -> jax.Array:
  """[B, H, W, bh * bw * C] -> [B, H * bh, W * bw, C]; channel order (row, col, c) per block.

  Every upsampling here is "write bh * bw values per input pixel", so all of them share this
  reshape instead of scattering.
  """
  bh, bw = _pair(block)
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, bh, bw, c // (bh * bw)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * bh, w * bw, c // (bh * bw))


def window_slices(x: jax.Array, window: IntOrPair, stride: IntOrPair) -> list[jax.Array]:
  """[B, H, W, C] -> kh * kw strided slices [B, Ho, Wo, C], offset (i, j) at index i * kw + j:
  slice k holds, for every output pixel, the element at offset k of its (VALID) window.

  Pooling, depthwise and small-map convolutions combine these elementwise: strided slices fuse
  into XLA's loops and their gradients are cheap, where gathers and scatters are not.
  """
  (kh, kw), (sh, sw) = _pair(window), _pair(stride)
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  return [x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
          for i in range(kh) for j in range(kw)]


def max_pool_with_argmax(x: jax.Array, window: IntOrPair,
                         stride: IntOrPair) -> tuple[jax.Array, jax.Array]:
  """Max pooling that also returns the switches (int32, same shape as the pooled map)."""
  return _max_pool(x, _pair(window), _pair(stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x, window, stride):
  # A running maximum over the window slices, elementwise: XLA fuses it into one loop. Stacking
  # the windows and gathering at the argmax materialised them and made the backward a scatter
  # (a tenth of FCN-8s's train step on CPU).
  y = switches = None
  for k, part in enumerate(window_slices(x, window, stride)):
    if y is None:
      y, switches = part, jnp.zeros(part.shape, jnp.int32)
    else:
      better = part > y  # Strictly: the first maximum wins ties, as in argmax.
      y, switches = jnp.where(better, part, y), jnp.where(better, k, switches)
  return y, switches


def _max_pool_fwd(x, window, stride):
  y, switches = _max_pool(x, window, stride)
  # The backward's switches as an argmax (the same first maximum): XLA keeps a reduction's
  # result, but recomputed the running maximum's switches inside the backward, once per window
  # offset and element.
  small = window[0] * window[1] <= np.iinfo(np.int8).max
  kept = jnp.argmax(jnp.stack(window_slices(x, window, stride)), axis=0).astype(
      jnp.int8 if small else jnp.int32)
  return (y, switches), (kept, x.shape[1:3])


def _max_pool_bwd(window, stride, residuals, cotangents):
  """The gradient goes to each window's switch: `max_unpool`, padded to the input's size.
  Autodiff's gradient of the running maximum (a select per window slice, recomputed) took 25 ms
  against 9 ms for ResNet-18's stem pool (3x3 / 2, batch 32 of 32x32x64, with its batch norm
  and ReLU; 2026-12-07, 2-core box)."""
  (switches, in_hw), (g, _) = residuals, cotangents
  grad = max_unpool(g, switches, window, stride)
  return (jnp.pad(grad, ((0, 0), (0, in_hw[0] - grad.shape[1]), (0, in_hw[1] - grad.shape[2]),
                         (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def spatial_switches(x: jax.Array, window: IntOrPair, stride: IntOrPair) -> jax.Array:
  """Switches of the channel-summed map, [B, Ho, Wo, 1]: one position per window for all channels.

  Lets a map with a different channel count (e.g. class scores) be max-unpooled through a pooling
  layer of the encoder; the trailing 1 broadcasts over channels in `max_unpool`.
  """
  return max_pool_with_argmax(jnp.sum(x, axis=-1, keepdims=True), window, stride)[1]


def max_unpool(y: jax.Array, switches: jax.Array, window: IntOrPair,
               stride: IntOrPair) -> jax.Array:
  """Puts each value of `y` back at its switch position, zeros elsewhere.

  The output is ((Ho - 1) * s + k) per axis. `switches` may have 1 channel (spatial switches).
  This is the adjoint of `max_pool_with_argmax`'s selection: where overlapping windows
  (window > stride) chose the same pixel, the values add up.
  """
  (kh, kw), (sh, sw) = _pair(window), _pair(stride)
  if (kh, kw) == (sh, sw):
    hot = jax.nn.one_hot(switches, kh * kw, dtype=y.dtype) * y[..., None]  # [B, Ho, Wo, C, k*k]
    b, ho, wo, c, _ = hot.shape
    return depth_to_space(jnp.swapaxes(hot, 3, 4).reshape(b, ho, wo, kh * kw * c), window)
  # Overlapping windows: each offset (i, j) is a strided copy, placed by interior padding. A
  # select per offset: through a one-hot product ResNet-18's stem pool gradient took 31 ms
  # against 9 ms (see `_max_pool_bwd`).
  out, zero = 0., jnp.zeros((), y.dtype)
  for i in range(kh):
    for j in range(kw):
      pads = [(0, 0, 0), (i, kh - 1 - i, sh - 1), (j, kw - 1 - j, sw - 1), (0, 0, 0)]
      out = out + lax.pad(jnp.where(switches == i * kw + j, y, zero), zero, pads)
  return out


def nearest_unpool(x: jax.Array, factor: IntOrPair) -> jax.Array:
  """Nearest-neighbour unpooling: every value copied into a factor x factor block."""
  fh, fw = _pair(factor)
  return depth_to_space(jnp.tile(x, (1, 1, 1, fh * fw)), factor)


def bed_of_nails_unpool(x: jax.Array, factor: IntOrPair) -> jax.Array:
  """"Bed of nails": the value at the top-left of its factor x factor block, zeros elsewhere."""
  fh, fw = _pair(factor)
  zeros = jnp.zeros(x.shape[:3] + ((fh * fw - 1) * x.shape[3],), x.dtype)
  return depth_to_space(jnp.concatenate([x, zeros], axis=-1), factor)


def transpose_padding(kernel_size: IntOrPair, padding: IntOrPair = 0,
                      output_padding: IntOrPair = 0) -> tuple[tuple[int, int], ...]:
  """PyTorch-style (padding, output_padding) -> the explicit pairs `lax.conv_transpose` takes.

  Output size per axis is (in - 1) * stride - 2 * padding + kernel + output_padding, as in
  `torch.nn.ConvTranspose2d`; e.g. 3x3, stride 2, padding 1, output_padding 1 maps 2x2 to 4x4.
  """
  return tuple((k - 1 - p, k - 1 - p + op) for k, p, op in
               zip(_pair(kernel_size), _pair(padding), _pair(output_padding), strict=True))


def bilinear_kernel_init(key, shape, dtype=jnp.float32) -> jax.Array:
  """FCN's upsampling init: a bilinear filter from each input channel to the same output channel."""
  del key  # Deterministic.
  kh, kw, cin, cout = shape
  if cin != cout:
    raise ValueError(f'bilinear init needs in == out channels, got kernel shape {shape}')

  def tent(k):
    f = (k + 1) // 2
    centre = f - 1 if k % 2 else f - 0.5
    return 1 - np.abs(np.arange(k) - centre) / f

  filt = np.outer(tent(kh), tent(kw))
  return jnp.asarray(filt[:, :, None, None] * np.eye(cin)[None, None], dtype)


def _phase_conv_transpose(x, kernel, strides, padding_pairs):
  """`lax.conv_transpose(x, kernel, strides, padding_pairs)` as one stride-1 conv + depth_to_space.

  Output pixel o = a * s + r (phase r) only ever meets kernel taps t = r', r' + s, ... so each
  phase is a stride-1 conv with the sub-kernel kernel[s - 1 - r::s] of the front-zero-padded,
  un-flipped kernel. All s*s phases are stacked on the output channels of one convolution. This
  skips the multiplications by the s - 1 inserted zeros that make the dilated form slow.
  """
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  jh, jw = -(-kh // sh), -(-kw // sw)  # Taps per phase.
  cin, cout = kernel.shape[2:]
  kp = jnp.pad(kernel, ((jh * sh - kh, 0), (jw * sw - kw, 0), (0, 0), (0, 0)))
  kp = kp.reshape(jh, sh, jw, sw, cin, cout)[:, ::-1, :, ::-1]  # [u, r_h, v, r_w, cin, cout]
  kp = kp.transpose(0, 2, 4, 1, 3, 5).reshape(jh, jw, cin, sh * sw * cout)
  # The stride-1 conv as im2col + one matmul: XLA:CPU computes a conv's kernel gradient ~50x
  # slower than the matmul's (a conv whose window is the whole feature map).
  xp = jnp.pad(x, ((0, 0), (jh - 1, jh - 1), (jw - 1, jw - 1), (0, 0)))
  ah, aw = x.shape[1] + jh - 1, x.shape[2] + jw - 1
  cols = jnp.concatenate([xp[:, u:u + ah, v:v + aw] for u in range(jh) for v in range(jw)], -1)
  y = cols @ kp.reshape(jh * jw * cin, sh * sw * cout)
  full = depth_to_space(y, (sh, sw))  # Zero-padding transpose conv, (in - 1) * s + k (+ zeros).
  # Crop (negative pad) or extend to the requested padding; full[o + k - 1 - lo] is output o.
  pads = [(0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
  for axis, (k, s, (lo, hi)) in enumerate(zip((kh, kw), (sh, sw), padding_pairs, strict=True)):
    n_in, n_full = x.shape[1 + axis], full.shape[1 + axis]
    n_out = (n_in - 1) * s + 1 + lo + hi - k + 1
    crop = k - 1 - lo
    pads[1 + axis] = (-crop, n_out - n_full + crop, 0)
  return lax.pad(full, jnp.zeros((), full.dtype), pads)


class ConvTranspose(nn.Module):
  """Drop-in `flax.linen.ConvTranspose` (kernel HWIO, no kernel flip) with PyTorch-style padding.

  Same parameters and outputs as `nn.ConvTranspose(..., padding=transpose_padding(k, p, op))`.
  Like flax's (transpose_kernel=False), it multiplies by X^T where X is the conv matrix of the
  spatially *flipped* kernel; `torch.nn.ConvTranspose2d` weights need that flip (and IOHW -> HWIO).
  `impl='phase'` computes it by the sub-pixel decomposition (about 10x faster forward+backward on
  CPU for k=4, s=2); `impl='lax'` calls `lax.conv_transpose` (the reference).
  """
  features: int
  kernel_size: IntOrPair
  strides: IntOrPair = 1
  padding: IntOrPair = 0
  output_padding: IntOrPair = 0
  use_bias: bool = True
  bilinear_init: bool = False  # FCN's init; needs in == out channels.
  impl: str = 'phase'
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ksize, strides = _pair(self.kernel_size), _pair(self.strides)
    init = bilinear_kernel_init if self.bilinear_init else self.kernel_init
    kernel = self.param('kernel', init, ksize + (x.shape[-1], self.features), self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    pads = transpose_padding(ksize, self.padding, self.output_padding)
    if self.impl not in ('phase', 'lax'):
      raise ValueError(f"unknown impl {self.impl!r}; valid: 'phase', 'lax'")
    if self.impl == 'phase' and strides != (1, 1):
      y = _phase_conv_transpose(x, kernel, strides, pads)
    else:  # At stride 1 no zeros are inserted: lax's form is a plain conv, faster than im2col.
      y = lax.conv_transpose(x, kernel, strides, pads,
                             dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y if bias is None else y + bias


class ResizeConv(nn.Module):
  """Resize (bilinear or nearest) by an integer factor, then a 3x3 conv (no checkerboard)."""
  features: int
  factor: IntOrPair = 2
  method: str = 'bilinear'
  kernel_size: int = 3
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fh, fw = _pair(self.factor)
    if self.method == 'nearest':
      x = nearest_unpool(x, (fh, fw))
    else:
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, h * fh, w * fw, c), self.method)
    return nn.Conv(self.features, (self.kernel_size,) * 2, padding='SAME', dtype=self.dtype)(x)


def check_upsample_kind(kind: str) -> None:
  if kind not in UPSAMPLE_KINDS:
    raise ValueError(f'unknown upsample kind {kind!r}; valid: {", ".join(UPSAMPLE_KINDS)}')


class Upsample(nn.Module):
  """One upsampling step by `factor`, of any kind in `UPSAMPLE_KINDS`.

  `features` (default: input channels) matters for the learnable kinds. 'transpose_conv' uses
  kernel 2 * factor, stride factor, bilinear init, as FCN's upscore layers (no bias). 'max_unpool'
  needs `switches` from a `factor` x `factor`, stride `factor` pooling.
  """
  kind: str
  factor: int = 2
  features: int | None = None
  dtype: Any = None

  def __post_init__(self):
    check_upsample_kind(self.kind)  # Fail when the model is built, not at the first call.
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, switches: jax.Array | None = None) -> jax.Array:
    f, features = self.factor, self.features or x.shape[-1]
    if self.kind == 'nearest':
      return nearest_unpool(x, f)
    if self.kind == 'bed_of_nails':
      return bed_of_nails_unpool(x, f)
    if self.kind == 'max_unpool':
      if switches is None:
        raise ValueError("Upsample(kind='max_unpool') needs the pooling switches")
      return max_unpool(x, switches, f, f)
    if self.kind == 'transpose_conv':
      pad = (f + 1) // 2  # Out = in * f + f - 2 * pad + output_padding = in * f.
      return ConvTranspose(features, 2 * f, f, pad, 2 * pad - f, use_bias=False,
                           bilinear_init=features == x.shape[-1], dtype=self.dtype,
                           name='conv')(x)
    return ResizeConv(features, f, dtype=self.dtype, name='resize_conv')(x)
