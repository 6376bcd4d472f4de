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


def redundancy_loss(masks, part_images, image, tolerance=0.02):
  """mean over pixels of sum_k M_k [|P_k - I| >= |P_0 - I| - tolerance], the indicator constant.

  A part's mask is charged on the pixels where its layer does not reconstruct the image better
  than the background layer does (by at least `tolerance`, mean absolute error over channels),
  and nowhere else. Why: with `warp_source_pixels` a part's layer equals the background on the
  plain background around its object, so the reconstruction cannot tell where the mask should
  stop, and the background/foreground term (which charges every mask pixel, the object's
  included) has to stay weak or it removes the parts: the masks came out as smooth blobs 1-2 px
  beyond the objects. This term charges only those tie pixels, so it can be strong.

  Args:
    masks: `[B, H, W, K+1]` softmax masks, index 0 = background.
    part_images: `[B, H, W, K+1, 3]` the layers the masks blend.
    image: `[B, H, W, 3]` the image they reconstruct.
    tolerance: how much better (mean absolute error) a part must be to be free of charge.

  Returns:
    Scalar in [0, 1]: 0 when every part's mask lies where it beats the background.
  """
  errors = tf.reduce_mean(tf.abs(part_images - image[..., None, :]), axis=-1)  # [B, H, W, K+1]
  redundant = tf.cast(errors[..., 1:] >= errors[..., :1] - tolerance, masks.dtype)
  return tf.reduce_mean(tf.reduce_sum(masks[..., 1:] * tf.stop_gradient(redundant), axis=-1))
