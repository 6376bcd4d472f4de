"""Transformation losses (paper Eq. 8-11): tie each part pose T_k to its mask's moments."""

import tensorflow as tf

from copart_tf.losses import moments


def translation_loss(masks, affines, eps=moments._EPS):
  """mean over parts and batch of |t_k - u_k|_1, u_k = soft centroid of M_k over all pixels.

  Args:
    masks: foreground masks `[B, H, W, K]` (retargeted masks M^{s->t} in training).
    affines: `[B, K, 2, 3]` poses whose shift t_k should sit on the centroid (T^t in training).
    eps: added to each mask's mass before normalising (see `moments`).

  Returns:
    Scalar.
  """
  centers = moments.centroids(masks, eps)
  return tf.reduce_mean(tf.reduce_sum(tf.abs(affines[..., 2] - centers), axis=-1))


def rotation_scale_loss(masks, affines, threshold=0.02, eps=moments._EPS):
  """sum over parts of ||A_k A_k^T - Sigma_k||_F, mean over the batch.

  Sigma_k is the mass-weighted covariance of the pixels with M_k > threshold (zeta), one
  Frobenius norm per part and image (the reference takes one norm over the whole batch).

  Args:
    masks: foreground masks `[B, H, W, K]`.
    affines: `[B, K, 2, 3]`.
    threshold: zeta.
    eps: added to each mask's mass before normalising (see `moments`).

  Returns:
    Scalar.
  """
  linear = affines[..., :2]
  aat = tf.matmul(linear, linear, transpose_b=True)
  sigma = moments.covariances(masks, threshold, eps)
  diff = aat - sigma
  frobenius = tf.sqrt(tf.reduce_sum(tf.square(diff), axis=[-2, -1]) + 1e-12)
  return tf.reduce_mean(tf.reduce_sum(frobenius, axis=-1))
