"""Part discovery (not in the paper): heatmaps drawn to what the background misses, claims by content."""

import tensorflow as tf

from copart_tf.losses import moments


def _content(image, background_image, grid_size):
  """Mean |image - background| over channels, average-pooled to a `grid_size` grid `[B, h, w, 1]`."""
  content = tf.reduce_mean(tf.abs(image - background_image), axis=-1, keepdims=True)
  factor = content.shape[1] // grid_size
  if factor > 1:
    content = tf.nn.avg_pool2d(content, factor, factor, "VALID")
  return content


def _shares(content):
  """Content `[B, h, w, 1]` -> constant shares `[B, h*w, 1]` that sum to 1 per image."""
  share = tf.reshape(tf.stop_gradient(content), [tf.shape(content)[0], -1, 1])
  return share / (tf.reduce_sum(share, axis=1, keepdims=True) + 1e-6)


def claimed_shares(heatmap_logits, image, background_image):
  """Each part's share of the image's content, `[B, K]` (sums to 1 over parts; constant content).

  ``sum_u share(u) claim_k(u)``, with `seek_loss`'s share (``|I - background|`` pooled to the
  heatmap grid, normalised per image) and claims (softmax over parts of the logits).

  Args:
    heatmap_logits: `[B, h, w, K]`.
    image, background_image: `[B, H, W, 3]`, H a multiple of h.
  """
  share = _shares(_content(image, background_image, heatmap_logits.shape[1]))  # [B, n, 1]
  shape = tf.shape(heatmap_logits)
  claims = tf.nn.softmax(tf.reshape(heatmap_logits, [shape[0], -1, shape[3]]), axis=-1)
  return tf.reduce_sum(share * claims, axis=1)


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
  content = _content(image, background_image, heatmap_logits.shape[1])
  shape = tf.shape(heatmap_logits)
  flat = tf.reshape(heatmap_logits, [shape[0], -1, shape[3]])  # [B, n, K]
  share = _shares(content)  # [B, n, 1]
  claims = tf.stop_gradient(tf.nn.softmax(flat, axis=2))  # [B, n, K]
  log_pdf = tf.nn.log_softmax(flat, axis=1)
  return -tf.reduce_mean(tf.reduce_sum(share * claims * log_pdf, axis=[1, 2]))


def consistency_loss(heatmap_logits, image, background_image):
  """Soft k-means of the content's colours over the whole batch, with the parts' claims as clusters.

  ``sum_u share(u) sum_k claim_k(u) ||c(u) - mu_k||^2``, mean over the batch, where
  - ``share(u)`` is the content of cell u (`seek_loss`'s: ``|I - P_0|`` pooled to the heatmap
    grid, normalised per image), a constant;
  - ``c(u)`` is the content-weighted mean colour of the pixels of cell u (so a cell on a sprite's
    edge has the sprite's colour, not a blend with the background), a constant;
  - ``claim_k(u)`` is the softmax over parts of the heatmap logits at u (what `seek_loss` splits
    the content by);
  - ``mu_k`` is the claim- and share-weighted mean of c over every cell of every image of the
    batch (a constant): part k's colour across the batch's videos.

  Why: the parts' claims decide which part goes to which object, and nothing else in the
  objective asks a part to take the same kind of object in every video (the objective is
  symmetric under renaming the parts of one image). On rung A a part held sprites of every id
  (docs/EXPERIMENTS.md sections 8-10). This is SCOPS's semantic consistency (Hung et al. 2019: a
  part's features are a shared basis vector in every image) with the pixel colour as the feature,
  because no pretrained features are available offline: a part whose claims cover a red sprite
  in one video and a cyan one in another pays the spread of its colours; its gradient on a cell's
  logits, ``share(u) claim_k(u) (d_k(u) - sum_j claim_j(u) d_j(u))``, moves the cell to the part
  whose batch colour is nearest. It assumes a part keeps its colour across videos (true of rung
  A's sprites; not of rung B's figure, whose limbs are coloured per video).

  Args:
    heatmap_logits: `[B, h, w, K]` heatmap logits; the softmax over K at a cell = the claims.
    image, background_image: `[B, H, W, 3]`, H a multiple of h.

  Returns:
    Scalar >= 0 (0 when every part's claimed content has one colour across the batch).
  """
  grid = heatmap_logits.shape[1]
  pixel_content = _content(image, background_image, image.shape[1])  # [B, H, W, 1], not pooled
  factor = image.shape[1] // grid
  content = tf.nn.avg_pool2d(pixel_content, factor, factor, "VALID")
  colour = tf.nn.avg_pool2d(pixel_content * image, factor, factor, "VALID") / (content + 1e-6)
  shape = tf.shape(heatmap_logits)
  claims = tf.reshape(tf.nn.softmax(heatmap_logits, axis=-1), [shape[0], -1, shape[3]])
  share = _shares(content)  # [B, n, 1]
  colour = tf.stop_gradient(tf.reshape(colour, [shape[0], -1, 1, 3]))  # [B, n, 1, 3]
  weight = tf.stop_gradient(share * claims)[..., None]  # [B, n, K, 1]
  centres = tf.reduce_sum(weight * colour, axis=[0, 1]) / (
    tf.reduce_sum(weight, axis=[0, 1]) + 1e-6
  )  # [K, 3]
  distance = tf.reduce_sum(tf.square(colour - centres), axis=-1)  # [B, n, K]
  return tf.reduce_mean(tf.reduce_sum(share * claims * distance, axis=[1, 2]))


def extent_loss(heatmap_logits, affines, image, background_image, eps=1.0):
  """Fits each part's extent A A^T to the covariance of the content it claims.

  ``sum_k K share_k ||A_k A_k^T - Sigma_k||_F``, mean over the batch, where Sigma_k is the
  covariance of the pixels weighted by content (``|I - background|``, per pixel) x claims (the
  softmax over parts of the logits, bilinearly upsampled), and share_k the part's share of the
  content (`claimed_shares`), so a part absent from the image is not pulled. Sigma and share
  are constants: only the poses' linear parts learn from it.

  Why: the rotation/scale loss fits A A^T to the part's mask, and the mask is cut by the pose
  prior, whose extent is A: a part whose object was absent from most videos shrank to a point
  (the mask loss pulls an empty mask's A to 0) and stayed one when its object was there, its
  mask held to a pixel by its own prior (rung A, seed 2: part 1 claimed a quarter of the
  content in the videos with the violet ellipse, at an extent of 0.7 px, and the ellipse went
  to the background). The claims do not depend on A, so this breaks the circle; it is the M
  step of a Gaussian mixture for the covariances, as `seek_loss` is for the centres.

  Args:
    heatmap_logits: `[B, h, w, K]`.
    affines: `[B, K, 2, 3]` the parts' poses in `image`.
    image, background_image: `[B, H, W, 3]`.
    eps: pixels of mass added before normalising (`moments.covariances`).

  Returns:
    Scalar >= 0.
  """
  size = image.shape[1]
  content = _content(image, background_image, size)  # [B, H, W, 1], not pooled
  claims = tf.image.resize(tf.nn.softmax(heatmap_logits, axis=-1), [size, size], "bilinear")
  weights = tf.stop_gradient(content * claims)  # [B, H, W, K]
  sigma = moments.covariances(weights, 0.0, eps)
  share = tf.stop_gradient(claimed_shares(heatmap_logits, image, background_image))  # [B, K]
  linear = affines[..., :2]
  diff = tf.matmul(linear, linear, transpose_b=True) - sigma
  frobenius = tf.sqrt(tf.reduce_sum(tf.square(diff), axis=[-2, -1]) + 1e-12)
  num_parts = tf.cast(tf.shape(share)[1], share.dtype)
  return tf.reduce_mean(tf.reduce_sum(num_parts * share * frobenius, axis=-1))


def balance_loss(heatmap_logits, image, background_image):
  """log K - the entropy of the parts' claimed shares of the content over the batch.

  ``log K + sum_k q_k log q_k``, ``q_k`` the mean over the batch of `claimed_shares` (the
  content constant, the claims not): 0 when every part claims 1/K of the batch's content.

  Why: the seek term gives a part that claims no content no pull (k-means' dead cluster), and
  a non-parametric heatmap has no reason to give up content it already claims: on the 128 px
  humanoid (rung C, the figure 5 % of the frame) one part ended with 0.9 of the content and 8
  of 10 claimed 0.001 each (a floor f / K on the seek term's claims, f = 0.2, left two parts
  seen at step 400 of 900, one with 0.79 of the content: tried, deleted). The parts of an
  articulated figure are all present in nearly every frame, so the batch's content should be
  split among all of them; which split, the reconstruction and the other terms decide. (On
  rung A, whose sprites are absent from many videos, a balanced split is wrong: there it made
  the parts positional.)

  Args:
    heatmap_logits: `[B, h, w, K]`.
    image, background_image: `[B, H, W, 3]`, H a multiple of h.

  Returns:
    Scalar in [0, log K].
  """
  marginal = tf.reduce_mean(claimed_shares(heatmap_logits, image, background_image), axis=0)
  marginal /= tf.reduce_sum(marginal) + 1e-8
  num_parts = tf.cast(tf.shape(marginal)[0], marginal.dtype)
  return tf.math.log(num_parts) + tf.reduce_sum(marginal * tf.math.log(marginal + 1e-8))
