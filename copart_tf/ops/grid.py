"""The one coordinate grid used everywhere (warp, moments, concentration, evaluation).

Convention (DESIGN.md §2): normalised coordinates, x to the right, y down, and pixel
*centres* at ``-1 + (2 i + 1) / W`` for column ``i`` of a ``W``-wide image (same for rows).
The image therefore spans exactly ``[-1, 1]`` from its left edge to its right edge, and the
mapping between normalised and pixel coordinates is

    x_norm = (2 * x_pix + 1) / W - 1        x_pix = ((x_norm + 1) * W - 1) / 2

where ``x_pix`` is the pixel index (0 = centre of the first pixel). The reference code mixes
three grids that disagree by up to 2/W; every module of copart_tf imports from here instead.
"""

import numpy as np
import tensorflow as tf


def pixel_centers(size, dtype=tf.float32):
  """Normalised coordinates of the pixel centres along one axis.

  Args:
    size: number of pixels along the axis.
    dtype: output dtype.

  Returns:
    `[size]` tensor, ``-1 + (2 i + 1) / size`` for ``i = 0 .. size-1``.
  """
  size_f = tf.cast(size, dtype)
  return (2.0 * tf.range(size, dtype=dtype) + 1.0) / size_f - 1.0


def make_grid(height, width, dtype=tf.float32):
  """Normalised (x, y) coordinates of every pixel centre.

  Args:
    height: image height H.
    width: image width W.
    dtype: output dtype.

  Returns:
    `[H, W, 2]` tensor; ``grid[i, j] = (x_j, y_i)``.
  """
  xs = pixel_centers(width, dtype)
  ys = pixel_centers(height, dtype)
  grid_x, grid_y = tf.meshgrid(xs, ys)  # both [H, W]
  return tf.stack([grid_x, grid_y], axis=-1)


def make_grid_np(height, width, dtype=np.float32):
  """NumPy twin of `make_grid`, for evaluation and data code that must not build TF graphs."""
  xs = (2.0 * np.arange(width) + 1.0) / width - 1.0
  ys = (2.0 * np.arange(height) + 1.0) / height - 1.0
  grid_x, grid_y = np.meshgrid(xs, ys)
  return np.stack([grid_x, grid_y], axis=-1).astype(dtype)


def normalized_to_pixels(coords, height, width):
  """Normalised (x, y) -> pixel (x, y) with 0 at the centre of the first pixel.

  Works for NumPy arrays and tensors; the last axis holds (x, y).
  """
  scale = np.array([width, height], dtype=np.float32)
  if isinstance(coords, np.ndarray):
    return ((coords + 1.0) * scale - 1.0) / 2.0
  scale_t = tf.constant(scale, dtype=coords.dtype)
  return ((coords + 1.0) * scale_t - 1.0) / 2.0


def pixels_to_normalized(coords, height, width):
  """Pixel (x, y) (0 = centre of the first pixel) -> normalised (x, y)."""
  scale = np.array([width, height], dtype=np.float32)
  if isinstance(coords, np.ndarray):
    return (2.0 * coords + 1.0) / scale - 1.0
  scale_t = tf.constant(scale, dtype=coords.dtype)
  return (2.0 * coords + 1.0) / scale_t - 1.0
