"""Tests of copart_tf.losses on hand-made masks and images whose answers are known exactly."""

import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.losses import background as background_lib
from copart_tf.losses import concentration as concentration_lib
from copart_tf.losses import discovery as discovery_lib
from copart_tf.losses import equivariance as equivariance_lib
from copart_tf.losses import moments
from copart_tf.losses import perceptual as perceptual_lib
from copart_tf.losses import reconstruction as reconstruction_lib
from copart_tf.losses import transformation as transformation_lib
from copart_tf.ops import affine as affine_lib
from copart_tf.ops import warp as warp_lib


def _centres(size):
  return -1.0 + (2.0 * np.arange(size) + 1.0) / size


def _rectangle(height, width, rows, cols, value=1.0):
  """`[H, W]` mask with `value` on rows[0]:rows[1], cols[0]:cols[1]."""
  mask = np.zeros((height, width))
  mask[rows[0] : rows[1], cols[0] : cols[1]] = value
  return mask


def _gaussian(height, width, mean, cov):
  """Unnormalised Gaussian bump `[H, W]` on the pixel-centre grid (peak 1)."""
  xs, ys = np.meshgrid(_centres(width), _centres(height))
  d = np.stack([xs - mean[0], ys - mean[1]], axis=-1)
  inv = np.linalg.inv(cov)
  return np.exp(-0.5 * np.einsum("hwi,ij,hwj->hw", d, inv, d))


def _rotated_cov(theta, sx, sy):
  rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
  return rot @ np.diag([sx * sx, sy * sy]) @ rot.T, rot @ np.diag([sx, sy])


def _stack_masks(*masks):
  """`[H, W]` masks -> `[1, H, W, K]` float64."""
  return np.stack(masks, axis=-1)[None].astype(np.float64)


def _discrete_moments(mask):
  """Exact weighted mean and covariance of an `[H, W]` mask over the pixel centres (NumPy)."""
  h, w = mask.shape
  xs, ys = np.meshgrid(_centres(w), _centres(h))
  points = np.stack([xs.ravel(), ys.ravel()], axis=-1)
  weights = mask.ravel() / mask.sum()
  mean = weights @ points
  centred = points - mean
  return mean, (weights[:, None] * centred).T @ centred


class MomentsTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(
    ("centred", 16, 16, (4, 12), (2, 14)),
    ("off_centre", 16, 20, (1, 6), (11, 18)),
    ("one_row", 8, 8, (3, 4), (0, 8)),
  )
  def test_rectangle(self, height, width, rows, cols):
    masks = _stack_masks(_rectangle(height, width, rows, cols))
    # Centre: midpoint of the first and last pixel centres.
    xs, ys = _centres(width), _centres(height)
    centre = [(xs[cols[0]] + xs[cols[1] - 1]) / 2, (ys[rows[0]] + ys[rows[1] - 1]) / 2]
    self.assertAllClose(moments.centroids(masks)[0, 0], centre, atol=1e-6)
    # Uniform rectangle of half-widths a = n_x / W, b = n_y / H: the continuous covariance is
    # diag(a^2 / 3, b^2 / 3); n equally spaced pixel centres give (n^2 - 1) / (3 W^2) =
    # a^2 / 3 - 1 / (3 W^2) exactly.
    nx, ny = cols[1] - cols[0], rows[1] - rows[0]
    a, b = nx / width, ny / height
    expected = np.diag([a * a / 3 - 1 / (3 * width**2), b * b / 3 - 1 / (3 * height**2)])
    cov = moments.covariances(masks)[0, 0]
    self.assertAllClose(cov, expected, atol=1e-6)
    self.assertAllClose(cov, _discrete_moments(masks[0, ..., 0])[1], atol=1e-6)
    self.assertAllClose(
      cov, np.diag([a * a / 3, b * b / 3]), atol=1.0 / (3 * min(height, width) ** 2) + 1e-6
    )

  def test_gaussian_blob(self):
    cov_1, _ = _rotated_cov(0.6, 0.15, 0.07)
    cov_2, _ = _rotated_cov(-1.1, 0.05, 0.1)
    mean_1, mean_2 = (0.2, -0.15), (-0.3, 0.25)
    masks = _stack_masks(_gaussian(64, 64, mean_1, cov_1), _gaussian(64, 64, mean_2, cov_2))
    masks = np.concatenate([masks, 0.5 * masks[..., ::-1]], axis=0)  # batch of 2, parts swapped
    centres = moments.centroids(masks).numpy()
    covs = moments.covariances(masks).numpy()
    self.assertEqual(centres.shape, (2, 2, 2))
    self.assertEqual(covs.shape, (2, 2, 2, 2))
    # A Gaussian sampled on a grid much finer than its width keeps its mean and covariance.
    self.assertAllClose(centres[0], [mean_1, mean_2], atol=1e-5)
    self.assertAllClose(centres[1], [mean_2, mean_1], atol=1e-5)
    self.assertAllClose(covs[0], [cov_1, cov_2], atol=1e-5)
    self.assertAllClose(covs[1], [cov_2, cov_1], atol=1e-5)

  def test_mass_and_empty_mask(self):
    masks = _stack_masks(_rectangle(8, 8, (0, 2), (0, 4)), np.zeros((8, 8)))
    self.assertAllClose(moments.mass(masks), [[8.0, 0.0]])
    self.assertAllClose(moments.centroids(masks)[0, 1], [0.0, 0.0])
    self.assertAllClose(moments.covariances(masks)[0, 1], np.zeros((2, 2)))

  def test_threshold_ignores_faint_pixels(self):
    rect = _rectangle(16, 16, (3, 9), (5, 12))
    noise = np.random.default_rng(0).uniform(0.0, 0.02, size=(16, 16))
    masks = _stack_masks(np.maximum(rect, noise))
    masks[0, 0, 0, 0] = 0.02  # exactly zeta: ignored too ("at or below")
    expected = moments.covariances(_stack_masks(rect))
    self.assertAllClose(moments.covariances(masks, threshold=0.02), expected, atol=1e-9)
    # Without the threshold the faint pixels spread the covariance noticeably.
    self.assertNotAllClose(moments.covariances(masks), expected, atol=1e-3)

  def test_threshold_weights_by_mass(self):
    # Two pixels of the same row, masses 0.9 and 0.3: weighted mean/variance, not pixel counts.
    mask = np.zeros((4, 4))
    mask[1, 0], mask[1, 3] = 0.9, 0.3
    mean, cov = _discrete_moments(mask)
    self.assertAllClose(mean[0], (0.9 * -0.75 + 0.3 * 0.75) / 1.2)
    got = moments.covariances(_stack_masks(mask), threshold=0.02)[0, 0]
    self.assertAllClose(got, cov, atol=1e-6)
    self.assertAllClose(got[0, 0], 0.9 * 0.3 / 1.2**2 * 1.5**2, atol=1e-6)


class TransformationLossTest(tf.test.TestCase, parameterized.TestCase):
  def test_rotation_scale_zero_for_matching_gaussian(self):
    cov, linear = _rotated_cov(0.4, 0.12, 0.06)
    mask = _gaussian(64, 64, (0.1, 0.05), cov)
    affine = np.concatenate([linear, [[0.1], [0.05]]], axis=1)[None, None]
    self.assertAllClose(linear @ linear.T, cov)
    # With zeta = 0 the discrete covariance is the Gaussian's: the loss is ~0.
    loss = transformation_lib.rotation_scale_loss(_stack_masks(mask), affine, threshold=0.0)
    self.assertLess(float(loss), 1e-4)
    # A different shape is penalised by ||A A^T - Sigma||_F.
    wrong = affine.copy()
    wrong[..., :2] = np.eye(2) * 0.1
    loss = transformation_lib.rotation_scale_loss(_stack_masks(mask), wrong, threshold=0.0)
    self.assertAllClose(loss, np.linalg.norm(0.01 * np.eye(2) - cov), atol=1e-4)

  def test_rotation_scale_zero_with_threshold(self):
    # A built from the exact (thresholded) covariance: A = Sigma^(1/2) (A A^T = Sigma).
    cov, _ = _rotated_cov(-0.8, 0.2, 0.1)
    mask = _gaussian(48, 48, (0.0, -0.1), cov)
    kept = mask * (mask > 0.02)
    _, sigma = _discrete_moments(kept)
    values, vectors = np.linalg.eigh(sigma)
    sqrt = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    affine = np.concatenate([sqrt, [[0.0], [-0.1]]], axis=1)[None, None]
    loss = transformation_lib.rotation_scale_loss(_stack_masks(mask), affine, threshold=0.02)
    self.assertLess(float(loss), 1e-5)

  def test_rotation_scale_known_value_sums_parts_means_batch(self):
    # Affines with A = 0: loss = mean over batch of sum over parts of ||Sigma_k||_F.
    rects = [_rectangle(16, 16, (2, 10), (4, 8)), _rectangle(16, 16, (0, 16), (0, 16))]
    masks = np.concatenate([_stack_masks(*rects), _stack_masks(rects[0], rects[0])], axis=0)
    norms = [np.linalg.norm(_discrete_moments(r)[1]) for r in rects]
    expected = ((norms[0] + norms[1]) + 2 * norms[0]) / 2
    affines = np.zeros((2, 2, 2, 3))
    loss = transformation_lib.rotation_scale_loss(masks, affines, threshold=0.02)
    self.assertAllClose(loss, expected, atol=1e-5)

  def test_translation_zero_at_centroid(self):
    masks = _stack_masks(
      _rectangle(16, 16, (2, 7), (3, 13)), _gaussian(16, 16, (0.3, -0.4), np.eye(2) * 0.02)
    )
    centres = moments.centroids(masks).numpy()
    affines = np.tile(np.eye(2, 3), (1, 2, 1, 1))
    affines[..., 2] = centres
    self.assertAllClose(transformation_lib.translation_loss(masks, affines), 0.0, atol=1e-7)
    # |dx| + |dy| per part, mean over parts and batch: (0.1 + 0.2 + 0.3 + 0.0) / 2.
    affines[0, 0, :, 2] += [0.1, -0.2]
    affines[0, 1, :, 2] += [0.0, 0.3]
    self.assertAllClose(transformation_lib.translation_loss(masks, affines), 0.3, atol=1e-6)


class ConcentrationLossTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("corner", 0, 0), ("inside", 5, 9), ("edge", 11, 3))
  def test_delta_is_zero(self, row, col):
    mask = np.zeros((12, 12))
    mask[row, col] = 1.0
    self.assertAllClose(concentration_lib.concentration_loss(_stack_masks(mask)), 0.0, atol=1e-5)

  @parameterized.named_parameters(("square", 8, 8), ("rect", 6, 10))
  def test_uniform_known_value(self, height, width):
    # Variance of n equally spaced centres over [-1, 1]: (n^2 - 1) / (3 n^2), per axis.
    value = (width**2 - 1) / (3 * width**2) + (height**2 - 1) / (3 * height**2)
    masks = np.full((2, height, width, 3), 0.4)
    # Summed over the 3 parts, mean over the batch.
    self.assertAllClose(concentration_lib.concentration_loss(masks), 3 * value, atol=1e-5)
    self.assertAllClose(concentration_lib.canonical_concentration_loss(masks), 3 * value, atol=1e-5)

  def test_equals_trace_of_covariance(self):
    masks = _stack_masks(
      _gaussian(32, 32, (0.2, 0.1), _rotated_cov(0.5, 0.2, 0.1)[0]),
      _rectangle(32, 32, (3, 20), (10, 30), 0.7),
    )
    expected = np.trace(moments.covariances(masks)[0], axis1=-2, axis2=-1).sum()
    self.assertAllClose(concentration_lib.concentration_loss(masks), expected, atol=1e-5)

  def test_canonical_is_around_zero(self):
    # 9x9: the centre pixel sits at 0, so a delta there is perfectly concentrated.
    centre = np.zeros((9, 9))
    centre[4, 4] = 1.0
    loss = concentration_lib.canonical_concentration_loss(_stack_masks(centre))
    self.assertAllClose(loss, 0.0, atol=1e-6)
    # A delta at pixel (row 1, col 7) costs ||u||^2; it is still "concentrated" in the usual sense.
    off = np.zeros((9, 9))
    off[1, 7] = 1.0
    u = np.array([_centres(9)[7], _centres(9)[1]])
    masks = _stack_masks(off)
    self.assertAllClose(concentration_lib.canonical_concentration_loss(masks), u @ u, atol=1e-5)
    self.assertAllClose(concentration_lib.concentration_loss(masks), 0.0, atol=1e-5)
    # Parallel axis theorem: spread around 0 = spread around the centroid + ||centroid||^2.
    rect = _stack_masks(_rectangle(9, 9, (0, 3), (5, 9)))
    mean, cov = _discrete_moments(rect[0, ..., 0])
    self.assertAllClose(
      concentration_lib.canonical_concentration_loss(rect), np.trace(cov) + mean @ mean, atol=1e-5
    )


class BackgroundLossTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(
    ("k1", 1, 0.5, 0.5), ("k4", 4, 0.5, 0.5), ("k3_vox", 3, 0.05, 0.05)
  )
  def test_extremes(self, k, bg_weight, fg_weight):
    all_background = np.zeros((2, 8, 8, k + 1))
    all_background[..., 0] = 1.0
    self.assertAllClose(
      background_lib.background_loss(all_background, bg_weight, fg_weight), 0.0, atol=1e-7
    )
    # No background anywhere; the foreground mass (1 per pixel) spread over parts any way.
    rng = np.random.default_rng(k)
    fg = rng.random((2, 8, 8, k))
    fg /= fg.sum(axis=-1, keepdims=True)
    no_background = np.concatenate([np.zeros((2, 8, 8, 1)), fg], axis=-1)
    self.assertAllClose(
      background_lib.background_loss(no_background, bg_weight, fg_weight),
      bg_weight + fg_weight / k,
      atol=1e-7,
    )

  def test_half_and_half(self):
    masks = np.zeros((1, 4, 4, 3))
    masks[:, :2, :, 0] = 1.0  # top half background
    masks[:, 2:, :, 1] = 1.0  # bottom half part 1
    # 0.5 * mean(1 - M_0) + 0.5 * mean(M_1, M_2) = 0.5 * 0.5 + 0.5 * 0.25.
    self.assertAllClose(background_lib.background_loss(masks), 0.375)


class RedundancyLossTest(tf.test.TestCase):
  """A hand-made 1 x 4 frame: an object on the two middle pixels, one part whose layer is the
  moved source (right on the object, equal to the background elsewhere)."""

  def _case(self):
    bg_colour, obj_colour = np.array([0.2, 0.2, 0.2]), np.array([0.9, 0.1, 0.1])
    image = np.stack([bg_colour, obj_colour, obj_colour, bg_colour])[None, None]  # [1, 1, 4, 3]
    part_images = np.stack(
      [np.broadcast_to(bg_colour, (1, 1, 4, 3)), image], axis=-2
    )  # [1, 1, 4, 2, 3]: background layer, the part's layer
    return image.astype(np.float32), part_images.astype(np.float32)

  def test_charges_only_where_the_part_is_no_better(self):
    image, part_images = self._case()
    # Part mask 0.8 everywhere: charged on the two background pixels only.
    masks = np.zeros((1, 1, 4, 2), np.float32)
    masks[..., 1] = 0.8
    masks[..., 0] = 0.2
    self.assertAllClose(background_lib.redundancy_loss(masks, part_images, image), 0.8 * 2 / 4)
    # Mask exactly on the object: free.
    masks = np.zeros((1, 1, 4, 2), np.float32)
    masks[0, 0, [1, 2], 1] = 1.0
    masks[0, 0, [0, 3], 0] = 1.0
    self.assertAllClose(background_lib.redundancy_loss(masks, part_images, image), 0.0)

  def test_gradient_pushes_the_rim_down_and_leaves_the_object(self):
    image, part_images = self._case()
    depth = tf.Variable(np.zeros((1, 1, 4, 2), np.float32))
    with tf.GradientTape() as tape:
      masks = tf.nn.softmax(depth, axis=-1)
      loss = background_lib.redundancy_loss(masks, part_images, image)
    grad = tape.gradient(loss, depth).numpy()[0, 0, :, 1]  # d loss / d part depth
    self.assertTrue(np.all(grad[[0, 3]] > 0))  # descent lowers the part on the background
    self.assertAllClose(grad[[1, 2]], [0.0, 0.0])  # and does not touch it on the object


class SeekLossTest(tf.test.TestCase):
  """A hand-made 4 x 4 frame on a flat background: object A in the top-left 2 x 2 cell, object B
  in the bottom-right one; two parts, heatmaps on the 2 x 2 grid of cells."""

  def _case(self):
    image = np.full((1, 4, 4, 3), 0.2, np.float32)
    image[0, :2, :2] = [0.9, 0.2, 0.2]  # A: mean absolute difference 0.7 / 3
    image[0, 2:, 2:] = [0.2, 0.2, 0.8]  # B: 0.6 / 3
    return image, np.full((1, 4, 4, 3), 0.2, np.float32)

  def test_each_part_is_pulled_to_the_content_it_claims_even_far_from_its_heatmap(self):
    image, background = self._case()
    # Part 1 peaks on A's cell, part 2 on the empty top-right cell; part 2 claims B (its logit
    # there is higher than part 1's) although its heatmap there is tiny.
    start = np.array([[[6.0, -2.0], [0.0, 6.0], [-4.0, -4.0], [-8.0, -2.0]]], np.float32)
    logits = tf.Variable(start)  # [1, cells (row-major), parts]
    with tf.GradientTape() as tape:
      loss = discovery_lib.seek_loss(tf.reshape(logits, [1, 2, 2, 2]), image, background)
    grad = tape.gradient(loss, logits).numpy()[0]
    self.assertLess(grad[3, 1], -0.1)  # part 2 is pulled to B, not damped by its tiny pdf there
    self.assertGreater(grad[1, 1], 0.0)  # and leaves the empty cell
    self.assertLess(abs(grad[0, 0]), 0.1 * abs(grad[3, 1]))  # part 1 stays on A, which it claims
    # The value: -sum over cells and parts of share * claim * log pdf.
    claims = tf.nn.softmax(start[0], axis=1).numpy()
    log_pdf = tf.nn.log_softmax(start[0], axis=0).numpy()
    share = np.array([0.7, 0.0, 0.0, 0.6]) / 1.3
    self.assertAllClose(loss, -(share[:, None] * claims * log_pdf).sum(), atol=1e-4)

  def test_no_content_no_pull(self):
    _, background = self._case()
    logits = tf.Variable(np.random.default_rng(0).normal(size=(1, 4, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
      loss = discovery_lib.seek_loss(tf.reshape(logits, [1, 2, 2, 2]), background, background)
    self.assertAllClose(loss, 0.0)
    self.assertAllClose(tape.gradient(loss, logits), np.zeros((1, 4, 2)))


class BalanceLossTest(tf.test.TestCase):
  def test_one_part_holding_the_content_pays_and_the_idle_part_is_raised_on_it(self):
    image, background = SeekLossTest()._case()
    # Part 1 claims every cell (A and B); part 2 nothing.
    logits = tf.Variable(np.array([[[9.0, -9.0]] * 4], np.float32))
    with tf.GradientTape() as tape:
      loss = discovery_lib.balance_loss(tf.reshape(logits, [1, 2, 2, 2]), image, background)
    self.assertAllClose(loss, np.log(2.0), atol=1e-3)
    grad = tape.gradient(loss, logits).numpy()[0]
    # Descent raises part 2 against part 1 on the content cells (A: 0, B: 3), not elsewhere.
    self.assertTrue(np.all(grad[[0, 3], 1] < 0) and np.all(grad[[0, 3], 0] > 0))
    self.assertAllClose(grad[[1, 2]], np.zeros((2, 2)), atol=1e-6)

  def test_an_even_split_costs_nothing(self):
    image, background = SeekLossTest()._case()
    # Each part claims half of every content cell.
    logits = tf.zeros([1, 2, 2, 2])
    self.assertAllClose(discovery_lib.balance_loss(logits, image, background), 0.0, atol=1e-6)


class ConsistencyLossTest(tf.test.TestCase):
  """Two 8 x 8 frames (two videos), claims on their 4 x 4 grid: a red and a blue object, at the
  top-left and bottom-right quarters in frame 0 and swapped in frame 1."""

  def _case(self):
    red, blue, grey = [0.9, 0.2, 0.2], [0.2, 0.2, 0.9], [0.2, 0.2, 0.2]
    images = np.full((2, 8, 8, 3), grey, np.float32)
    images[0, :4, :4], images[0, 4:, 4:] = red, blue
    images[1, :4, :4], images[1, 4:, 4:] = blue, red
    return images, np.full_like(images, 0.2)

  @staticmethod
  def _logits(top_left_part):
    """Decisive logits `[4, 4, 2]`: one part claims the top-left quarter, the other the rest."""
    logits = np.full((4, 4, 2), -12.0, np.float32)
    logits[..., 1 - top_left_part] = 12.0
    logits[:2, :2, top_left_part], logits[:2, :2, 1 - top_left_part] = 12.0, -12.0
    return logits

  def test_claims_by_colour_cost_nothing_and_claims_by_position_pay_the_colour_spread(self):
    images, background = self._case()
    by_colour = np.stack([self._logits(0), self._logits(1)])  # part 0 = red in both frames
    self.assertAllClose(
      discovery_lib.consistency_loss(by_colour, images, background), 0.0, atol=1e-4
    )
    by_position = np.stack([self._logits(0), self._logits(0)])  # part 0 = the top-left object
    # Each part holds red in one frame and blue in the other: mean colour (0.55, 0.2, 0.55), every
    # content cell 2 * 0.35^2 away from it.
    loss = discovery_lib.consistency_loss(by_position, images, background)
    self.assertAllClose(loss, 2 * 0.35**2, atol=1e-3)

  def test_gradient_moves_an_undecided_cell_to_the_part_of_its_colour(self):
    images, background = self._case()
    start = np.stack([self._logits(0), self._logits(1)])
    start[1, 3, 3] = 0.0  # frame 1's bottom-right (red) cell: claimed half and half
    logits = tf.Variable(start)
    with tf.GradientTape() as tape:
      loss = discovery_lib.consistency_loss(logits, images, background)
    grad = tape.gradient(loss, logits).numpy()[1, 3, 3]
    self.assertLess(grad[0], 0.0)  # descent raises part 0 (red elsewhere) ...
    self.assertGreater(grad[1], 0.0)  # ... and lowers part 1 (blue)

  def test_no_content_no_pull(self):
    _, background = self._case()
    logits = tf.Variable(np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
      loss = discovery_lib.consistency_loss(logits, background, background)
    self.assertAllClose(loss, 0.0, atol=1e-6)
    self.assertAllClose(tape.gradient(loss, logits), np.zeros((2, 4, 4, 3)))


class ExtentLossTest(tf.test.TestCase):
  """A 32 x 32 frame with one red bar (8 x 2 cells wide, 4 x 4 px cells); part 1 claims it."""

  def _case(self):
    image = np.full((1, 32, 32, 3), 0.2, np.float32)
    image[0, 12:20, 4:28] = [0.9, 0.2, 0.2]  # 24 px wide, 8 px tall
    logits = np.zeros((1, 8, 8, 2), np.float32)
    logits[0, 2:6, :, 0] = 12.0  # part 1 claims the bar's rows of cells, part 2 the rest
    logits[0, :2, :, 1] = logits[0, 6:, :, 1] = 12.0
    return tf.constant(image), tf.constant(image * 0 + 0.2), tf.constant(logits)

  def test_the_extent_grows_to_the_claimed_content_and_an_absent_part_is_not_pulled(self):
    image, background, logits = self._case()
    # The bar's covariance in normalised units: x half-width 24/32, y 8/32 (uniform: w^2 / 3).
    sx, sy = (24 / 32) / math.sqrt(3), (8 / 32) / math.sqrt(3)
    fitted = np.array([[[sx, 0.0, 0.0], [0.0, sy, 0.0]], [[0.05, 0, 0.5], [0, 0.05, 0.5]]])
    loss = discovery_lib.extent_loss(logits, tf.constant(fitted, tf.float32), image, background)
    self.assertLess(float(loss), 0.02)
    affines = tf.Variable(np.array([[[0.02, 0, 0], [0, 0.02, 0]]] * 2, np.float32)[None])
    with tf.GradientTape() as tape:
      loss = discovery_lib.extent_loss(logits, affines, image, background)
    grad = tape.gradient(loss, affines).numpy()[0]
    self.assertLess(grad[0, 0, 0], 0.0)  # descent widens part 1 along x ...
    self.assertLess(grad[0, 0, 0], 2 * grad[0, 1, 1])  # ... more than along y
    self.assertAllClose(grad[1], np.zeros((2, 3)), atol=1e-4)  # part 2 claims no content


class ReconstructionLossTest(tf.test.TestCase, parameterized.TestCase):
  def _images(self):
    return np.random.default_rng(3).random((2, 16, 16, 3)).astype(np.float32)

  def test_identical_is_zero(self):
    images = self._images()
    self.assertAllClose(reconstruction_lib.l1_loss(images, images), 0.0)
    self.assertAllClose(reconstruction_lib.gradient_loss(images, images), 0.0)
    self.assertAllClose(reconstruction_lib.pyramid_loss(images, images), 0.0)
    terms = reconstruction_lib.reconstruction_terms(images, images)
    self.assertEqual(set(terms), {"l1", "grad"})

  @parameterized.named_parameters(("up", 0.25), ("down", -0.1))
  def test_constant_offset(self, offset):
    images = self._images()
    shifted = images + offset
    self.assertAllClose(reconstruction_lib.l1_loss(images, shifted), abs(offset), atol=1e-6)
    # A constant offset has no image gradient; every pyramid level sees the same offset.
    self.assertAllClose(reconstruction_lib.gradient_loss(images, shifted), 0.0, atol=1e-6)
    self.assertAllClose(reconstruction_lib.pyramid_loss(images, shifted), abs(offset), atol=1e-6)

  def test_ramp_gradient_value(self):
    # I = 0.1 * column index: dx I = 0.1 everywhere, dy I = 0; against a flat image.
    ramp = np.tile(0.1 * np.arange(8, dtype=np.float32)[None, None, :, None], (1, 8, 1, 3))
    flat = np.zeros_like(ramp)
    self.assertAllClose(reconstruction_lib.gradient_loss(ramp, flat), 0.1, atol=1e-6)
    dx, dy = reconstruction_lib.image_gradients(ramp)
    self.assertEqual(dx.shape, (1, 8, 7, 3))
    self.assertEqual(dy.shape, (1, 7, 8, 3))
    # Pyramid: 2x2 averages of the ramp vs 0 -> the mean of the ramp at every level.
    self.assertAllClose(reconstruction_lib.pyramid_loss(ramp, flat, levels=3), 0.35, atol=1e-6)

  def test_terms_only_differentiate_the_reconstruction(self):
    images = tf.constant(self._images())
    recon = tf.constant(self._images()[::-1].copy())
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([images, recon])
      terms = reconstruction_lib.reconstruction_terms(
        images, recon, perceptual=reconstruction_lib.pyramid_loss
      )
      total = terms["l1"] + terms["grad"] + terms["perceptual"]
    self.assertEqual(set(terms), {"l1", "grad", "perceptual"})
    self.assertIsNone(tape.gradient(total, images))
    self.assertGreater(float(tf.reduce_max(tf.abs(tape.gradient(total, recon)))), 0.0)


class EquivarianceLossTest(tf.test.TestCase, parameterized.TestCase):
  def _poses(self, batch, k, seed):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-math.pi, math.pi, (batch, k))
    cos_sin = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    return affine_lib.from_pose(
      tf.constant(cos_sin, tf.float32),
      tf.constant(rng.uniform(0.1, 0.5, (batch, k, 2)), tf.float32),
      tf.constant(rng.uniform(-0.6, 0.6, (batch, k, 2)), tf.float32),
    )

  def test_zero_for_equivariant_model(self):
    target = self._poses(3, 4, seed=0)
    warp = affine_lib.random_affine(3, tf.constant([5, 6]))
    # The ideal model: T^w = W^-1 T^t for every part.
    warped = affine_lib.compose(affine_lib.invert(warp)[:, None], target)
    self.assertAllClose(equivariance_lib.equivariance_loss(warped, target, warp), 0.0, atol=1e-6)
    self.assertAllClose(equivariance_lib.expected_warped_poses(target, warp), warped, atol=1e-6)
    # Ignoring the warp (or applying it the other way round) is penalised.
    self.assertGreater(float(equivariance_lib.equivariance_loss(target, target, warp)), 0.05)
    wrong = affine_lib.compose(warp[:, None], target)
    self.assertGreater(float(equivariance_lib.equivariance_loss(wrong, target, warp)), 0.05)
    # Known value: every entry off by 0.1 -> mean |.| = 0.1.
    self.assertAllClose(
      equivariance_lib.equivariance_loss(warped + 0.1, target, warp), 0.1, atol=1e-6
    )

  def test_direction_matches_warp_affine(self):
    # Render a blob, warp the image with W as training does (I_w(u) = I(W u), border padding),
    # and measure the blob in both images: its centre moves by W^-1, its covariance by W^-1 too.
    size = 64
    cov, linear = _rotated_cov(0.5, 0.12, 0.06)
    centre = np.array([0.25, -0.2])
    image = _gaussian(size, size, centre, cov).astype(np.float32)
    images = np.repeat(image[None, :, :, None], 3, axis=-1)
    warp = affine_lib.from_pose(
      tf.constant([[math.cos(1.0), math.sin(1.0)]]),
      tf.constant([[0.8, 0.9]]),
      tf.constant([[0.15, -0.1]]),
    )
    warped = warp_lib.warp_affine(images, warp, padding="border")
    mask, warped_mask = images[..., :1], warped[..., :1]
    c, c_w = moments.centroids(mask)[0, 0], moments.centroids(warped_mask)[0, 0]
    inverse = affine_lib.invert(warp)[0]
    self.assertAllClose(c, centre, atol=1e-4)
    self.assertAllClose(c_w, affine_lib.apply(inverse, c[None])[0], atol=5e-3)
    # ... and not W c, which is far away: the test pins the direction.
    self.assertGreater(float(tf.norm(c_w - affine_lib.apply(warp[0], c[None])[0])), 0.2)
    # The pose the loss expects in I_w is W^-1 T: same shift and same A A^T as measured.
    pose = np.concatenate([linear, centre[:, None]], axis=1)[None, None].astype(np.float32)
    expected = equivariance_lib.expected_warped_poses(pose, warp)[0, 0]
    self.assertAllClose(expected[:, 2], c_w, atol=5e-3)
    a_w = expected[:, :2]
    cov_w = moments.covariances(warped_mask)[0, 0]
    self.assertAllClose(tf.matmul(a_w, a_w, transpose_b=True), cov_w, atol=2e-3)


class PerceptualLossTest(tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    keras.utils.set_random_seed(0)
    cls.vgg = perceptual_lib.VGGPerceptualLoss(weights="random")

  def test_zero_for_identical_positive_otherwise(self):
    rng = np.random.default_rng(4)
    images = tf.constant(rng.random((2, 32, 32, 3)), tf.float32)
    self.assertAllClose(self.vgg(images, images), 0.0, atol=1e-6)
    other = tf.constant(rng.random((2, 32, 32, 3)), tf.float32)
    self.assertGreater(float(self.vgg(images, other)), 1e-3)
    self.assertGreater(float(self.vgg(images, images + 0.05)), 0.0)

  def test_gradient_only_to_reconstruction(self):
    rng = np.random.default_rng(5)
    images = tf.constant(rng.random((1, 32, 32, 3)), tf.float32)
    recon = tf.constant(rng.random((1, 32, 32, 3)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([images, recon])
      value = self.vgg(images, recon)
    grad_images = tape.gradient(value, images)
    grad_recon = tape.gradient(value, recon)
    if grad_images is not None:
      self.assertAllEqual(grad_images, tf.zeros_like(images))
    self.assertGreater(float(tf.reduce_max(tf.abs(grad_recon))), 0.0)
    self.assertEmpty(self.vgg.trainable_weights)

  def test_resolve_weights(self):
    self.assertEqual(perceptual_lib.resolve_vgg_weights("none")[0], None)
    self.assertEqual(perceptual_lib.resolve_vgg_weights("random")[0], "random")
    with self.assertRaisesRegex(Exception, "file not found"):
      perceptual_lib.resolve_vgg_weights("/nonexistent/vgg.h5")


if __name__ == "__main__":
  tf.test.main()
