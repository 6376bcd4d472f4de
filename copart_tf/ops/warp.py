"""Differentiable bilinear warping in pure TensorFlow (replaces `tfa.image.transform`).

Why our own sampler (DESIGN.md §8): the core op behind `tfa.image.transform` and
`keras.ops.image.affine_transform`, ImageProjectiveTransformV3, has no gradient for its transform
parameters, so it cannot learn part poses through the warp; it also does not compile under XLA.
This module gives the same forward result (tested against the core op) with exact gradients for
both the images and the transforms, using only core ops (gather, floor, arithmetic), so SavedModels
that contain it load in a stock tensorflow_model_server.

Two entry points:
- `transform(images, transforms)`: `tfa.image.transform`'s calling convention: 8-parameter
  projective rows in PIXEL coordinates mapping OUTPUT points to INPUT points, constant fill.
- `warp_affine(images, affines)`: the model's fast path: `[N, 2, 3]` affines in normalised
  coordinates (copart_tf.ops.grid) mapping OUTPUT points to INPUT points, zero fill.
"""

import tensorflow as tf

from copart_tf.ops import grid as grid_lib


def bilinear_sample(images, x, y, fill_value=0.0):
  """Samples `images` at fractional pixel positions with bilinear interpolation.

  Neighbours outside the image read `fill_value` (the same rule as ImageProjectiveTransformV3
  with fill_mode="CONSTANT"), so the result fades smoothly to `fill_value` across the border.

  Args:
    images: `[N, H, W, C]` float tensor.
    x: `[N, Ho, Wo]` column positions in pixels (0 = centre of the first column).
    y: `[N, Ho, Wo]` row positions in pixels.
    fill_value: value outside the image.

  Returns:
    `[N, Ho, Wo, C]` samples.
  """
  images = tf.convert_to_tensor(images)
  dtype = images.dtype
  x = tf.cast(x, dtype)
  y = tf.cast(y, dtype)
  shape = tf.shape(images)
  batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
  out_shape = tf.shape(x)

  x0 = tf.floor(x)
  y0 = tf.floor(y)
  # Weights carry the gradient w.r.t. the sampling positions (floor has none).
  wx1 = x - x0
  wy1 = y - y0
  wx0 = 1.0 - wx1
  wy0 = 1.0 - wy1
  x0i = tf.cast(x0, tf.int32)
  y0i = tf.cast(y0, tf.int32)
  x1i = x0i + 1
  y1i = y0i + 1

  flat = tf.reshape(images, [batch, height * width, channels])
  fill = tf.cast(fill_value, dtype)
  fill_is_zero = isinstance(fill_value, (int, float)) and fill_value == 0

  def corner(xi, yi, weight):
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    index = tf.clip_by_value(yi, 0, height - 1) * width + tf.clip_by_value(xi, 0, width - 1)
    values = tf.gather(flat, tf.reshape(index, [batch, -1]), batch_dims=1)
    values = tf.reshape(values, tf.concat([out_shape, [channels]], axis=0))
    inside = tf.cast(inside, dtype)
    if fill_is_zero:
      # The mask goes on the [N, Ho, Wo] weight, not on the C-channel values: two fewer
      # full-size ops forward and one backward (the warp was a quarter of the training step's
      # op time), and bit for bit the same result and gradients (one factor is exactly 0 or 1).
      return (weight * inside)[..., None] * values
    inside = inside[..., None]
    return weight[..., None] * (values * inside + fill * (1.0 - inside))

  return (
    corner(x0i, y0i, wx0 * wy0)
    + corner(x1i, y0i, wx1 * wy0)
    + corner(x0i, y1i, wx0 * wy1)
    + corner(x1i, y1i, wx1 * wy1)
  )


def transform(images, transforms, fill_value=0.0, output_shape=None):
  """Projective warp with `tfa.image.transform`'s calling convention, differentiable.

  Each row (a0, a1, a2, b0, b1, b2, c0, c1) maps an OUTPUT pixel (x, y) to the INPUT point
  ``((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)`` with ``k = c0 x + c1 y + 1``
  (pixel coordinates, 0 = centre of the first pixel). Bilinear interpolation, constant fill.

  Args:
    images: `[N, H, W, C]` (or `[H, W, C]`) float tensor.
    transforms: `[N, 8]` or `[8]` (broadcast to every image).
    fill_value: value for points outside the input.
    output_shape: optional (height, width) of the output; defaults to the input's.

  Returns:
    Warped images, `[N, Ho, Wo, C]` (or `[Ho, Wo, C]` for a rank-3 input).
  """
  images = tf.convert_to_tensor(images)
  rank3 = images.shape.rank == 3
  if rank3:
    images = images[None]
  transforms = tf.cast(tf.convert_to_tensor(transforms), images.dtype)
  if transforms.shape.rank == 1:
    transforms = transforms[None]
  batch = tf.shape(images)[0]
  transforms = tf.broadcast_to(transforms, [batch, 8])
  if output_shape is None:
    out_h, out_w = tf.shape(images)[1], tf.shape(images)[2]
  else:
    out_h, out_w = output_shape
  ys, xs = tf.meshgrid(
    tf.range(out_h, dtype=images.dtype), tf.range(out_w, dtype=images.dtype), indexing="ij"
  )
  xs = xs[None]
  ys = ys[None]
  t = transforms[:, :, None, None]  # [N, 8, 1, 1]
  k = t[:, 6] * xs + t[:, 7] * ys + 1.0
  # ImageProjectiveTransformV3 returns the fill value where k == 0; keep the division finite.
  safe_k = tf.where(tf.equal(k, 0.0), tf.ones_like(k), k)
  x_in = (t[:, 0] * xs + t[:, 1] * ys + t[:, 2]) / safe_k
  y_in = (t[:, 3] * xs + t[:, 4] * ys + t[:, 5]) / safe_k
  out = bilinear_sample(images, x_in, y_in, fill_value)
  degenerate = tf.equal(k, 0.0)[..., None]
  out = tf.where(degenerate, tf.cast(fill_value, images.dtype) * tf.ones_like(out), out)
  return out[0] if rank3 else out


def warp_affine(images, affines, output_size=None, padding="zeros"):
  """Warps images by normalised affine maps from OUTPUT to INPUT coordinates.

  ``out(u) = images(affines @ (u, 1))`` for every output pixel centre u (normalised coordinates).
  To move a map V by a part pose T (DESIGN.md §2: (T V)(u) = V(T^-1 u)) pass ``invert(T)``.

  Args:
    images: `[N, H, W, C]` float tensor.
    affines: `[N, 2, 3]` output -> input maps in normalised coordinates.
    output_size: optional (height, width); defaults to the input's.
    padding: "zeros" (latent maps: nothing outside the frame) or "border" (replicate the edge
      pixels; used when warping whole images for the equivariance loss).

  Returns:
    `[N, Ho, Wo, C]`.
  """
  images = tf.convert_to_tensor(images)
  affines = tf.cast(affines, images.dtype)
  in_h, in_w = tf.shape(images)[1], tf.shape(images)[2]
  if output_size is None:
    if images.shape[1] is not None and images.shape[2] is not None:
      output_size = (images.shape[1], images.shape[2])
    else:
      output_size = (in_h, in_w)
  out_grid = grid_lib.make_grid(output_size[0], output_size[1], images.dtype)  # [Ho, Wo, 2]
  # Input normalised coordinates of every output pixel centre: [N, Ho, Wo, 2].
  points = tf.einsum("nij,hwj->nhwi", affines[:, :, :2], out_grid) + affines[:, None, None, :, 2]
  in_w_f = tf.cast(in_w, images.dtype)
  in_h_f = tf.cast(in_h, images.dtype)
  x_pix = ((points[..., 0] + 1.0) * in_w_f - 1.0) / 2.0
  y_pix = ((points[..., 1] + 1.0) * in_h_f - 1.0) / 2.0
  if padding == "border":
    x_pix = tf.clip_by_value(x_pix, 0.0, in_w_f - 1.0)
    y_pix = tf.clip_by_value(y_pix, 0.0, in_h_f - 1.0)
  elif padding != "zeros":
    raise ValueError(f"padding must be 'zeros' or 'border', got {padding!r}")
  return bilinear_sample(images, x_pix, y_pix, 0.0)
