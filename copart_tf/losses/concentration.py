"""Concentration loss (paper Eq. 13-14, from SCOPS): keep each part compact."""

import tensorflow as tf

from copart_tf.losses import moments


def concentration_loss(masks, eps=moments._EPS):
  """sum over parts of sum_u pdf(u) ||u - c_k||^2 (c_k = centroid), mean over the batch.

  Equals the trace of each part's covariance: 0 for a mask concentrated on one pixel.

  Args:
    masks: foreground masks `[B, H, W, K]`.
    eps: added to each mask's mass before normalising (see `moments`).

  Returns:
    Scalar.
  """
  centers = moments.centroids(masks, eps)
  return tf.reduce_mean(tf.reduce_sum(moments.spread_around(masks, centers, eps), axis=-1))


def canonical_concentration_loss(masks, eps=moments._EPS):
  """Like `concentration_loss` but around c_k = 0: canonical parts must sit at the frame centre.

  Args:
    masks: canonical foreground masks `[B, H, W, K]`.
    eps: added to each mask's mass before normalising (see `moments`).

  Returns:
    Scalar.
  """
  shape = tf.shape(masks)
  zeros = tf.zeros([shape[0], shape[3], 2], masks.dtype)
  return tf.reduce_mean(tf.reduce_sum(moments.spread_around(masks, zeros, eps), axis=-1))


def part_usage_entropy(masks, eps=moments._EPS):
  """Entropy of how each image's foreground is shared among the parts, mean over the batch.

  p_k = mass_k / sum_j mass_j; the loss is -sum_k p_k log p_k: 0 when one part holds all the
  foreground, log K when K parts hold equal shares. Why: two parts that move together reconstruct
  a rigid object exactly as well as one part, so nothing in the paper's objective merges them
  (measured: one sprite, K = 4, 41 % of its pixels in its largest part). Penalising the entropy
  prefers fewer parts; the reconstruction keeps parts apart where their motions differ. The
  penalty ignores the total foreground mass, so it does not push parts towards the background.

  Args:
    masks: foreground masks `[B, H, W, K]`.
    eps: added to the masses (pixels) before normalising.

  Returns:
    Scalar.
  """
  mass = moments.mass(masks) + eps  # [B, K]
  share = mass / tf.reduce_sum(mass, axis=-1, keepdims=True)
  return tf.reduce_mean(-tf.reduce_sum(share * tf.math.log(share), axis=-1))
