"""Part discovery: each part's heatmap is drawn to content nothing else explains (not in the paper)."""

import tensorflow as tf


def unexplained_content(image, background_image, masks):
  """Per part, what neither the background layer nor the other parts explain, `[B, H, W, K]`.

  ``r_k(u) = |I(u) - P_0(u)| * (1 - sum_{j != k, j >= 1} M_j(u))`` (mean absolute error over
  channels): the image's difference from the background layer, minus what the other foreground
  parts already cover. A part sitting on its object keeps seeing that object (nobody else covers
  it); a part sitting on nothing sees every object the others leave uncovered.

  Args:
    image: `[B, H, W, 3]` the image the assembly reconstructs.
    background_image: `[B, H, W, 3]` the background layer P_0.
    masks: `[B, H, W, K+1]` softmax masks, index 0 = background.

  Returns:
    `[B, H, W, K]`, constant (no gradient): the map is a target, not something to shrink.
  """
  difference = tf.reduce_mean(tf.abs(image - background_image), axis=-1, keepdims=True)
  foreground = masks[..., 1:]
  others = tf.reduce_sum(foreground, axis=-1, keepdims=True) - foreground
  return tf.stop_gradient(difference * tf.maximum(1.0 - others, 0.0))


def seek_loss(heatmaps, image, background_image, masks):
  """-mean over parts of sum_u pdf_k(u) r_k(u): the unexplained content under each heatmap.

  Why: the reconstruction's gradient with respect to a part's pose is local to the part's mask.
  A part that starts (or ends up) on plain background gets no gradient towards an object it does
  not overlap, and on rung A (1-4 independently moving sprites, K = 4) every part either stayed
  near its start or followed the one most salient sprite. This term gives the heatmap logits a
  gradient at every cell (softmax: pdf_u (r_u - E_pdf[r])), towards content that the background
  layer does not reproduce and no other part covers (`unexplained_content`).

  Args:
    heatmaps: `[B, h, w, K]` per-part softmax heatmaps (each sums to 1 over the h x w cells).
    image, background_image: `[B, H, W, 3]` with H a multiple of h.
    masks: `[B, H, W, K+1]` the masks of the assembly of `image`.

  Returns:
    Scalar in [-1, 0]: minus the mean, over batch and parts, of the expected unexplained content
    (mean absolute error per pixel) under the heatmap.
  """
  content = unexplained_content(image, background_image, masks)
  factor = content.shape[1] // heatmaps.shape[1]
  if factor > 1:
    content = tf.nn.avg_pool2d(content, factor, factor, "VALID")
  return -tf.reduce_mean(tf.reduce_sum(heatmaps * content, axis=[1, 2]))
