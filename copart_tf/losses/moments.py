"""Mask moments in normalised coordinates: mass, soft centroids and covariances.

Every function takes masks `[B, H, W, K]` (one channel per part, values in [0, 1]) and uses the
single grid of `copart_tf.ops.grid`, so centroids are directly comparable with part shifts t_k.
"""

import tensorflow as tf

from copart_tf.ops import grid as grid_lib

# Default added to every mask's mass (in pixels) before normalising: exact moments. Training
# passes a larger `eps` (CoPartModel's mass_epsilon, one pixel): negligible for a real part of
# hundreds of pixels, but it bounds the 1/mass gradients of a vanishing part; with 1e-6 the
# gradient norm jumped from ~7 to ~200 as parts shrank and training collapsed (measured on the
# synthetic humanoid).
_EPS = 1e-6


def _grid_like(masks):
  shape = tf.shape(masks)
  return grid_lib.make_grid(shape[1], shape[2], masks.dtype)  # [H, W, 2]


def mass(masks):
  """Sum of each mask over the image: `[B, H, W, K]` -> `[B, K]`."""
  return tf.reduce_sum(masks, axis=[1, 2])


def centroids(masks, eps=_EPS):
  """Mass-weighted centre of each mask, normalised (x, y): `[B, H, W, K]` -> `[B, K, 2]`.

  An (almost) empty mask gives ~(0, 0), the image centre.
  """
  grid = _grid_like(masks)
  weighted = tf.einsum("bhwk,hwc->bkc", masks, grid)
  return weighted / (mass(masks)[..., None] + eps)


def covariances(masks, threshold=0.0, eps=_EPS):
  """Mass-weighted covariance of each mask over its pixels with mask > threshold.

  Sigma_k = sum_u m(u) (u - mu)(u - mu)^T / sum_u m(u), with m = M_k * [M_k > threshold] and
  mu the centroid of m. Normalised by the mask's mass (not the pixel count) and centred on the
  thresholded mask itself, unlike the reference (DESIGN.md §5).

  Args:
    masks: `[B, H, W, K]`.
    threshold: zeta; pixels at or below it are ignored.
    eps: added to the mass (pixels) before dividing.

  Returns:
    `[B, K, 2, 2]` covariance matrices (zero for empty masks).
  """
  grid = _grid_like(masks)
  kept = masks * tf.cast(masks > threshold, masks.dtype)
  total = mass(kept)[..., None] + eps  # [B, K, 1]
  mean = tf.einsum("bhwk,hwc->bkc", kept, grid) / total  # [B, K, 2]
  second = tf.einsum("bhwk,hwc,hwd->bkcd", kept, grid, grid) / total[..., None]
  return second - mean[..., :, None] * mean[..., None, :]


def spread_around(masks, centers, eps=_EPS):
  """Sum over pixels of pdf(u) ||u - c_k||^2 with pdf = M_k / sum M_k.

  Args:
    masks: `[B, H, W, K]`.
    centers: `[B, K, 2]` (the centroids gives the variance; zeros gives the spread around the
      frame centre used for canonical masks).

  Returns:
    `[B, K]`.
  """
  grid = _grid_like(masks)
  pdf = masks / (mass(masks)[:, None, None, :] + eps)
  # ||u - c||^2 = ||u||^2 - 2 u.c + ||c||^2, summed against the pdf (sum pdf = 1).
  sq_norm = tf.reduce_sum(tf.square(grid), axis=-1)  # [H, W]
  term_uu = tf.einsum("bhwk,hw->bk", pdf, sq_norm)
  term_uc = tf.einsum("bhwk,hwc,bkc->bk", pdf, grid, centers)
  pdf_sum = tf.reduce_sum(pdf, axis=[1, 2])
  return term_uu - 2.0 * term_uc + pdf_sum * tf.reduce_sum(tf.square(centers), axis=-1)
