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
