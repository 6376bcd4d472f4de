"""Background loss (the paper's Eq. 7 is missing from its text; the reference does this)."""

import tensorflow as tf


def background_loss(masks, background_weight=0.5, foreground_weight=0.5):
  """background_weight * mean(1 - M_0) + foreground_weight * mean over foreground k of M_k.

  Pushes every pixel towards the background layer; reconstruction pushes back where a part is
  needed, so the foreground shrinks to the moving object.

  Args:
    masks: `[B, H, W, K+1]` softmax masks, index 0 = background.

  Returns:
    Scalar. 0 when M_0 = 1 everywhere; background_weight + foreground_weight / K when M_0 = 0
    everywhere.
  """
  background = masks[..., 0]
  foreground = masks[..., 1:]
  return background_weight * tf.reduce_mean(1.0 - background) + foreground_weight * tf.reduce_mean(
    foreground
  )
