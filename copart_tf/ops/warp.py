"""Differentiable bilinear warping in pure TensorFlow (replaces `tfa.image.transform`).

Why our own sampler (DESIGN.md §8): the core op behind `tfa.image.transform` and
`keras.ops.image.affine_transform`, ImageProjectiveTransformV3, has no gradient for its transform
parameters, so it cannot learn part poses through the warp; it also does not compile under XLA.
This module gives the same forward result (tested against the core op) with exact gradients for
both the images and the transforms, using only core ops (gather, floor, arithmetic), so SavedModels
that contain it load in a stock tensorflow_model_server.

`warp_affine(images, affines)`: `[N, 2, 3]` affines in normalised coordinates (copart_tf.ops.grid)
mapping OUTPUT points to INPUT points, zero fill (or the edge pixels with padding="border").
"""

import tensorflow as tf

from copart_tf.ops import grid as grid_lib


def bilinear_sample(images, x, y):
  """Samples `images` at fractional pixel positions with bilinear interpolation, zero fill.

  Neighbours outside the image read 0 (the same rule as ImageProjectiveTransformV3 with
  fill_mode="CONSTANT" and fill_value 0), so the result fades smoothly to 0 across the border.

  Args:
    images: `[N, H, W, C]` float tensor.
    x: `[N, Ho, Wo]` column positions in pixels (0 = centre of the first column).
    y: `[N, Ho, Wo]` row positions in pixels.

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

  def corner(xi, yi, weight):
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    index = tf.clip_by_value(yi, 0, height - 1) * width + tf.clip_by_value(xi, 0, width - 1)
    values = tf.gather(flat, tf.reshape(index, [batch, -1]), batch_dims=1)
    values = tf.reshape(values, tf.concat([out_shape, [channels]], axis=0))
    # The mask goes on the [N, Ho, Wo] weight, not on the C-channel values: two fewer full-size
    # ops forward and one backward (the warp was a quarter of the training step's op time), and
    # bit for bit the same result and gradients as masking the values (one factor is exactly 0
    # or 1).
    return (weight * tf.cast(inside, dtype))[..., None] * values

  return (
    corner(x0i, y0i, wx0 * wy0)
    + corner(x1i, y0i, wx1 * wy0)
    + corner(x0i, y1i, wx0 * wy1)
    + corner(x1i, y1i, wx1 * wy1)
  )


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
  return bilinear_sample(images, x_pix, y_pix)
