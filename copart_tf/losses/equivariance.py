"""Equivariance loss (paper Eq. 12)."""

import tensorflow as tf

from copart_tf.ops import affine as affine_lib


def expected_warped_poses(target_affines, warp_affines):
  """Poses a part should have in the warped image: W^-1 T.

  Direction: the warped image is I_w(u) = I_t(W u) (`warp_affine(I_t, W)`). A canonical point c of
  a part at pose T sits at p = T c in I_t, and shows in I_w at u with W u = p, so u = W^-1 T c.

  Args:
    target_affines: `[B, K, 2, 3]` poses T^t predicted on I_t.
    warp_affines: `[B, 2, 3]` the random W of each sample.

  Returns:
    `[B, K, 2, 3]`.
  """
  inverse = affine_lib.invert(warp_affines)[:, None]
  inverse = tf.broadcast_to(inverse, tf.shape(target_affines))
  return affine_lib.compose(inverse, target_affines)


def equivariance_loss(warped_affines, target_affines, warp_affines):
  """mean |T^w_k - W^-1 T^t_k| over the 6 free entries, foreground parts and batch.

  (Comparing 3x3 matrices: their last rows are equal, so only the 2x3 part contributes.)

  Args:
    warped_affines: `[B, K, 2, 3]` poses predicted on the warped image I_w.
    target_affines: `[B, K, 2, 3]` poses predicted on I_t.
    warp_affines: `[B, 2, 3]`.

  Returns:
    Scalar.
  """
  expected = expected_warped_poses(target_affines, warp_affines)
  return tf.reduce_mean(tf.abs(warped_affines - expected))
