"""Part discovery: the parts' heatmaps are drawn to what the background layer misses (not in the paper)."""

import tensorflow as tf


def seek_loss(heatmap_logits, image, background_image):
  """Fits each part's heatmap to the content it claims: a k-means step on what the background misses.

  ``-sum_u share(u) sum_k claim_k(u) log pdf_k(u)``, mean over the batch, where
  - ``share(u)`` is the image's difference from the background layer, ``|I - P_0|`` averaged over
    channels and pooled to the heatmap grid, normalised to sum to 1 per image (the content);
  - ``pdf_k`` is the softmax over cells of part k's logits (its heatmap, whose expected position
    is the part's centre with `shift_from="heatmap"`);
  - ``claim_k(u)`` is the softmax over parts of the same logits at cell u (which part claims it).
  share and claim are constants.

  Why: the reconstruction's gradient with respect to a part's pose is local to the part's mask.
  A part that starts on plain background gets no gradient towards an object it does not overlap,
  and on rung A (1-4 independently moving sprites, K = 4) the parts stayed near their start
  points or all followed the one most salient sprite (docs/EXPERIMENTS.md section 7). Here the
  gradient on the logits, ``pdf_k(u) sum_v share(v) claim_k(v) - share(u) claim_k(u)``, is not
  damped by a small pdf far from the part, so a part reaches content anywhere in the frame, and
  the parts split the content by which one claims it. (A plain "maximise the content under the
  heatmap" term, whose gradient is damped by the pdf, helped rung A less and hurt rung B.)

  Args:
    heatmap_logits: `[B, h, w, K]` logits; the softmax over the h x w cells is each heatmap.
    image, background_image: `[B, H, W, 3]`, H a multiple of h.

  Returns:
    Scalar >= 0 (a cross-entropy; 0 only if every heatmap is a point on content it alone claims).
  """
  content = tf.reduce_mean(tf.abs(image - background_image), axis=-1, keepdims=True)
  factor = content.shape[1] // heatmap_logits.shape[1]
  if factor > 1:
    content = tf.nn.avg_pool2d(content, factor, factor, "VALID")
  shape = tf.shape(heatmap_logits)
  flat = tf.reshape(heatmap_logits, [shape[0], -1, shape[3]])  # [B, n, K]
  share = tf.reshape(tf.stop_gradient(content), [shape[0], -1, 1])
  share /= tf.reduce_sum(share, axis=1, keepdims=True) + 1e-6  # [B, n, 1], sums to 1 per image
  claims = tf.stop_gradient(tf.nn.softmax(flat, axis=2))  # [B, n, K]
  log_pdf = tf.nn.log_softmax(flat, axis=1)
  return -tf.reduce_mean(tf.reduce_sum(share * claims * log_pdf, axis=[1, 2]))
