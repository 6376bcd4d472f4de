"""2-D convolutions for a CPU: fast filter gradient, fused nearest-upsample + conv, Winograd.

Why (issue 9, measured on the 2-core AVX2 machine with TF 2.21 + oneDNN): the filter gradient
TensorFlow registers for Conv2D (`_MklNativeConv2DBackpropFilter`) ran at 21-52 GFLOP/s on our
shapes while the forward conv and the input gradient ran at 90-140: it was 60 % of the paper
preset's training step. The filter gradient is a sum over taps of `patch^T @ out_grad`, i.e.
k*k matmuls of `[N*Ho*Wo, C_in]^T x [N*Ho*Wo, C_out]`, which TensorFlow's matmul runs at ~100-120
GFLOP/s on the same shapes (benchmarks/conv_gradients.py prints the comparison). `conv2d` keeps the
forward and the input gradient of the stock op and computes the filter gradient that way where it
pays (`matmul_gradient_pays`: wide convs; thin and most stride-2 convs keep the stock gradient).

`upsample_conv2d` is `conv2d(nearest_upsample_x2(x), kernel_3x3, "SAME")` computed exactly at the
low resolution: each of the 4 output phases (row parity, column parity) of a 3x3 conv over a
nearest-upsampled map reads only a 2x2 window of the low-resolution map, with the 3x3 taps summed
into 2x2 ones. That is 16 instead of 36 multiply-adds per output pixel and channel (2.25x fewer),
and the upsampled map and the gradient of the upsampling (a large `Sum`) disappear.

`winograd_conv2d` computes a 3x3 stride-1 conv by Winograd F(2x2, 3x3) (2.25x fewer multiplies);
`conv2d` switches to it for wide convs over large enough maps (`winograd_pays`).

All three are the same function of the same weights as the stock ops, up to float rounding
(tests/test_conv.py compares values and gradients).
"""

import tensorflow as tf


def _same_padding(size, kernel, stride):
  """TensorFlow's "SAME" padding (before, after) along one axis; `size` an int or a scalar tensor."""
  out = (size + stride - 1) // stride
  total = (out - 1) * stride + kernel - size
  total = max(total, 0) if isinstance(total, int) else tf.maximum(total, 0)
  return total // 2, total - total // 2


def _filter_gradient(inputs, out_grad, kernel_shape, stride, padding):
  """dL/dkernel of a conv: one `window^T @ other` matmul per tap.

  For each tap (dy, dx) the kernel gradient is `patch(dy, dx)^T @ out_grad` summed over batch and
  positions. Stride 1 shifts flat row ranges (no copies, see below); stride 2 copies strided
  windows of the input.

  Args:
    inputs: `[N, H, W, C_in]`.
    out_grad: `[N, Ho, Wo, C_out]`.
    kernel_shape: static `(kh, kw, C_in, C_out)`.
    stride: int.
    padding: "SAME" or "VALID".

  Returns:
    `[kh, kw, C_in, C_out]`.
  """
  kh, kw, c_in, c_out = kernel_shape
  shape = tf.shape(inputs)
  if padding == "SAME":
    # Static sizes where known: the padded shapes (and the matmuls') stay static.
    height = shape[1] if inputs.shape[1] is None else inputs.shape[1]
    width = shape[2] if inputs.shape[2] is None else inputs.shape[2]
    pad_h, pad_w = _same_padding(height, kh, stride), _same_padding(width, kw, stride)
  else:
    pad_h = pad_w = (0, 0)
  padded = tf.pad(inputs, [[0, 0], pad_h, pad_w, [0, 0]])
  grad_shape = tf.shape(out_grad)
  out_h, out_w = grad_shape[1], grad_shape[2]
  taps = []
  if stride == 1:
    # Flat shifts, no window copies: lay the padded input and the output gradient out in the same
    # [N * Hp * Wp] frame (the gradient zero-padded to Hp x Wp). Tap (dy, dx) then pairs frame
    # position p of the gradient with p + dy * Wp + dx of the input, never across a row or an
    # example where the gradient is non-zero, so each tap is one matmul of two row ranges of 2-D
    # matrices; row-range slices of a contiguous tensor share its buffer (no copy) when aligned.
    padded_shape = tf.shape(padded)
    frame_h, frame_w = padded_shape[1], padded_shape[2]
    frame = tf.pad(out_grad, [[0, 0], [0, frame_h - out_h], [0, frame_w - out_w], [0, 0]])
    flat_inputs = tf.reshape(padded, [-1, c_in])
    flat_grad = tf.reshape(frame, [-1, c_out])
    rows = tf.shape(flat_grad)[0] - ((kh - 1) * frame_w + (kw - 1))  # the rest is zero padding
    flat_grad = tf.slice(flat_grad, [0, 0], [rows, -1])
    for dy in range(kh):
      for dx in range(kw):
        shifted = tf.slice(flat_inputs, [dy * frame_w + dx, 0], [rows, -1])
        taps.append(tf.matmul(shifted, flat_grad, transpose_a=True))
  else:
    flat_grad = tf.reshape(out_grad, [-1, c_out])
    for dy in range(kh):
      for dx in range(kw):
        window = tf.strided_slice(
          padded,
          [0, dy, dx, 0],
          [shape[0], dy + (out_h - 1) * stride + 1, dx + (out_w - 1) * stride + 1, c_in],
          [1, stride, stride, 1],
        )
        taps.append(tf.matmul(tf.reshape(window, [-1, c_in]), flat_grad, transpose_a=True))
  return tf.reshape(tf.stack(taps), [kh, kw, c_in, c_out])


def matmul_gradient_pays(c_in, c_out, stride):
  """Whether the per-tap matmul filter gradient beats the stock one for these channel counts.

  The matmuls `[rows, C_in]^T x [rows, C_out]` are efficient only when both channel counts are
  reasonably wide, and stride-2 taps copy a strided window of the input each. Measured on the
  2-core AVX2 machine (benchmarks/conv_gradients.py and the small preset's shapes): the matmuls
  won 1.2-2.1x for stride 1 with both sides >= 64 channels, and for stride 2 only from 512
  output channels (1.34x at 256 -> 512); thin convs (3 -> 16, 8 -> 32, 10 -> 256) and stride-2
  convs up to 256 output channels were 5-70 % slower than the stock kernel.
  """
  if min(c_in, c_out) < 32:
    return False
  if stride == 1:
    other_side = c_in if c_out < c_in else c_out
    return other_side >= 64
  return c_out >= 512


def winograd_pays(height, width, c_in, c_out, batch=None):
  """Whether Winograd F(2x2, 3x3) beats the direct conv (3x3, stride 1, "SAME").

  It trades 2.25x fewer multiplies for transforms of the input, the output and the kernel (the
  kernel's costs the same whatever the map size), so it pays on wide convs with enough 2x2 output
  tiles. Measured forward + backward on the 2-core machine against the direct conv with the
  matmul filter gradient: 1536 -> 512 at 32x32 x 3 images 1.37x; 512 -> 512 at 32x32 1.2-1.45x;
  2048 -> 1024 at 16x16 x 3 images (192 tiles) 1.6x, but x 1 image (64 tiles) 0.8x and at 8x8
  0.85x.

  Args:
    height, width: static map size (None: unknown, no Winograd).
    c_in, c_out: channels.
    batch: static batch size, or None when unknown (then only maps of 32x32 and more qualify).
  """
  if height is None or width is None or height % 2 or width % 2 or min(c_in, c_out) < 256:
    return False
  if min(height, width) >= 32:
    return True
  return batch is not None and min(height, width) >= 16 and batch * height * width // 4 >= 192


def conv2d(inputs, kernel, bias=None, strides=1, padding="SAME", filter_gradient="auto"):
  """`tf.nn.conv2d` (+ bias) whose filter gradient can run as matmuls (see the module docstring).

  A 3x3 stride-1 "SAME" conv that is wide enough over a large enough map (`winograd_pays`) runs
  as `winograd_conv2d` instead when `filter_gradient` is "auto".

  Args:
    inputs: `[N, H, W, C_in]`.
    kernel: `[kh, kw, C_in, C_out]` with a static shape.
    bias: optional `[C_out]`.
    strides: int, the same along both axes.
    padding: "SAME" or "VALID".
    filter_gradient: "matmul" (per-tap matmuls), "stock" (TensorFlow's registered gradient) or
      "auto" (`matmul_gradient_pays`, or Winograd where it pays).

  Returns:
    `[N, Ho, Wo, C_out]`.
  """
  kernel_shape = tuple(kernel.shape)
  if None in kernel_shape or len(kernel_shape) != 4:
    raise ValueError(f"conv2d needs a kernel with a static 4-D shape, got {kernel.shape}")
  if padding not in ("SAME", "VALID"):
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
  if filter_gradient not in ("auto", "matmul", "stock"):
    raise ValueError(f"filter_gradient must be auto, matmul or stock, got {filter_gradient!r}")
  if (
    filter_gradient == "auto"
    and strides == 1
    and padding == "SAME"
    and kernel_shape[:2] == (3, 3)
    and winograd_pays(*inputs.shape[1:3], *kernel_shape[2:], batch=inputs.shape[0])
  ):
    return winograd_conv2d(inputs, kernel, bias)
  if filter_gradient == "auto":
    use_matmul = matmul_gradient_pays(kernel_shape[2], kernel_shape[3], strides)
  else:
    use_matmul = filter_gradient == "matmul"
  if not use_matmul:
    outputs = tf.nn.conv2d(inputs, kernel, strides, padding)
    return outputs if bias is None else tf.nn.bias_add(outputs, bias)

  @tf.custom_gradient
  def convolve(x, w):
    y = tf.nn.conv2d(x, w, strides, padding)

    def grad(dy):
      dx = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(x),
        filter=w,
        out_backprop=dy,
        strides=[1, strides, strides, 1],
        padding=padding,
      )
      return dx, _filter_gradient(x, dy, kernel_shape, strides, padding)

    return y, grad

  outputs = convolve(inputs, kernel)
  if bias is not None:
    outputs = tf.nn.bias_add(outputs, bias)
  return outputs


def _fold_taps(kernel, axis, phase):
  """Folds the 3 taps of `kernel` along `axis` into the 2 taps output phase `phase` reads.

  Phase 0 (even output rows/columns) reads low-resolution positions (i - 1, i) with taps
  (0 | 1 + 2); phase 1 reads (i, i + 1) with taps (0 + 1 | 2).
  """
  first, middle, last = tf.unstack(kernel, 3, axis=axis)
  folded = (first, middle + last) if phase == 0 else (first + middle, last)
  return tf.stack(folded, axis=axis)


def upsample_kernels(kernel):
  """The four 2x2 phase kernels of a 3x3 kernel applied after nearest x2 upsampling.

  Sums of taps rather than an einsum with 0/1 matrices: the einsum's gradient ran as a slow
  `_MklEinsum` (measured 0.17 s per paper-preset step).

  Args:
    kernel: `[3, 3, C_in, C_out]`.

  Returns:
    list of 4 `[2, 2, C_in, C_out]` kernels, phases (0, 0), (0, 1), (1, 0), (1, 1) as
    (row parity, column parity), the order `tf.nn.depth_to_space` expects.
  """
  kernels = []
  for row_phase in range(2):
    rows = _fold_taps(kernel, 0, row_phase)
    for col_phase in range(2):
      kernels.append(_fold_taps(rows, 1, col_phase))
  return kernels


def upsample_conv2d(inputs, kernel, bias=None, filter_gradient="auto"):
  """Exactly `conv2d(nearest_upsample_x2(inputs), kernel, "SAME") + bias`, at low resolution.

  Args:
    inputs: `[N, h, w, C_in]`.
    kernel: `[3, 3, C_in, C_out]`.
    bias: optional `[C_out]`.
    filter_gradient: of the four 2x2 phase convs, as in `conv2d`.

  Returns:
    `[N, 2h, 2w, C_out]`.
  """
  if tuple(kernel.shape[:2]) != (3, 3):
    raise ValueError(f"upsample_conv2d needs a 3x3 kernel, got {kernel.shape}")
  phases = []
  for index, phase_kernel in enumerate(upsample_kernels(kernel)):
    row_phase, col_phase = divmod(index, 2)
    # Phase p of an output row reads low-resolution rows (i - 1 + p, i + p): pad one row on the
    # side the window leaves the map.
    padded = tf.pad(
      inputs, [[0, 0], [1 - row_phase, row_phase], [1 - col_phase, col_phase], [0, 0]]
    )
    phases.append(
      conv2d(padded, phase_kernel, bias, padding="VALID", filter_gradient=filter_gradient)
    )
  return tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2)


# Winograd F(2, 3) kernel transform G (4 x 3); the 2-D transform G g G^T of every (C_in, C_out)
# slice is one [16, 9] x [9, C_in * C_out] matmul with the Kronecker product G (x) G: a single
# multithreaded pass over the kernel (a chain of unstack / stack was several).
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_WINOGRAD_GG = tuple(
  tuple(_WINOGRAD_G[a][y] * _WINOGRAD_G[b][x] for y in range(3) for x in range(3))
  for a in range(4)
  for b in range(4)
)


def _winograd_kernel(kernel):
  """G g G^T of Winograd F(2x2, 3x3): `[3, 3, C_in, C_out]` -> `[16, C_in, C_out]`."""
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  transform = tf.constant(_WINOGRAD_GG, kernel.dtype)
  return tf.reshape(tf.matmul(transform, tf.reshape(kernel, [9, c_in * c_out])), [16, c_in, c_out])


def _input_transform(tiles_first, tiles_second, tiles_third, tiles_fourth):
  """B^T d of F(2x2, 3x3) along one axis, on the 4 positions of every tile."""
  return (
    tiles_first - tiles_third,
    tiles_second + tiles_third,
    tiles_third - tiles_second,
    tiles_second - tiles_fourth,
  )


def _output_transform(first, second, third, fourth):
  """A^T m of F(2x2, 3x3) along one axis: the 2 outputs of a tile from its 4 products."""
  return first + second + third, second - third - fourth


def winograd_conv2d(inputs, kernel, bias=None):
  """3x3 stride-1 "SAME" conv by Winograd F(2x2, 3x3): 16 instead of 36 multiplies per 2x2 tile.

  The same function as `tf.nn.conv2d(inputs, kernel, 1, "SAME")` (float32 rounding aside: F(2, 3)
  is the well-conditioned Winograd variant). Each 4x4 input tile (stride 2, overlapping) is
  transformed (adds only), multiplied by the transformed kernel as 16 batched matmuls
  `[tiles, C_in] x [C_in, C_out]`, and each 4x4 product is folded back to a 2x2 output tile.
  Gradients come from autodiff of these ops: the two batched-matmul gradients carry the FLOPs,
  with the same 2.25x saving. Needs even H and W.

  Args:
    inputs: `[N, H, W, C_in]`, H and W even.
    kernel: `[3, 3, C_in, C_out]`.
    bias: optional `[C_out]`.

  Returns:
    `[N, H, W, C_out]`.
  """
  if tuple(kernel.shape[:2]) != (3, 3):
    raise ValueError(f"winograd_conv2d needs a 3x3 kernel, got {kernel.shape}")
  c_in, c_out = kernel.shape[2], kernel.shape[3]
  shape = tf.shape(inputs)
  batch, half_h, half_w = shape[0], shape[1] // 2, shape[2] // 2
  padded = tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
  # Rows 2i + a of the padded map, a = 0..3, as (half-row i + a // 2, parity a % 2): slices (whose
  # gradient is a pad) of a free reshape instead of strided copies.
  rows = tf.reshape(padded, [batch, half_h + 1, 2, half_w + 1, 2, c_in])
  row_taps = [
    tf.reshape(
      tf.slice(rows, [0, a // 2, a % 2, 0, 0, 0], [-1, half_h, 1, -1, -1, -1]),
      [batch, half_h, half_w + 1, 2, c_in],
    )
    for a in range(4)
  ]
  transformed = []
  for row in _input_transform(*row_taps):
    col_taps = [
      tf.reshape(
        tf.slice(row, [0, 0, b // 2, b % 2, 0], [-1, -1, half_w, 1, -1]),
        [batch, half_h, half_w, c_in],
      )
      for b in range(4)
    ]
    transformed.extend(_input_transform(*col_taps))
  tiles = tf.reshape(tf.stack(transformed), [16, -1, c_in])
  products = tf.matmul(tiles, _winograd_kernel(kernel))  # [16, N * H/2 * W/2, C_out]
  products = tf.unstack(tf.reshape(products, [4, 4, batch, half_h, half_w, c_out]))
  # A^T m A: along rows, then along columns; (row, column) order is what depth_to_space expects.
  outputs = []
  for row in _output_transform(*products):
    outputs.extend(_output_transform(*tf.unstack(row)))
  result = tf.nn.depth_to_space(tf.concat(outputs, axis=-1), 2)
  return result if bias is None else tf.nn.bias_add(result, bias)
