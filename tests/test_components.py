"""Component checks of the assembly (issue: parts must emerge): direction, gradient, pose prior.

Each test isolates one piece with a hand-made case whose answer is known, so a sign, axis or
convention error fails here instead of showing up as a model that silently learns nothing.
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.losses import background as background_lib
from copart_tf.losses import discovery as discovery_lib
from copart_tf.model import copart_model
from copart_tf.model import transform_head as transform_head_lib
from copart_tf.model.copart_model import CoPartModel
from copart_tf.model.transform_head import TransformHead
from copart_tf.ops import affine as affine_lib
from copart_tf.ops import grid as grid_lib
from copart_tf.ops import warp as warp_lib

SIZE = 32


def _pose(x, y, scale=0.15):
  return np.array([[scale, 0.0, x], [0.0, scale, y]], np.float32)


def _blob(x, y, size=SIZE, sigma=0.12):
  """A Gaussian blob `[1, size, size, 1]` centred at normalised (x, y)."""
  grid = grid_lib.make_grid_np(size, size)
  d2 = (grid[..., 0] - x) ** 2 + (grid[..., 1] - y) ** 2
  return np.exp(-d2 / (2 * sigma**2))[None, ..., None].astype(np.float32)


def _centroid(image):
  """Normalised (x, y) centroid of a `[H, W]` non-negative map."""
  grid = grid_lib.make_grid_np(*image.shape)
  mass = image.sum()
  return (image[..., None] * grid).sum((0, 1)) / mass


class DirectionTest(tf.test.TestCase, parameterized.TestCase):
  """A latent blob at the source pose, re-posed to the target pose, lands at the target pose."""

  @parameterized.named_parameters(
    ("two_step_right", False, (0.25, 0.0)),
    ("two_step_down", False, (0.0, 0.25)),
    ("composed_right", True, (0.25, 0.0)),
    ("composed_down", True, (0.0, 0.25)),
    ("composed_diagonal", True, (-0.2, 0.15)),
  )
  def test_retarget_moves_the_blob_by_the_pose_change(self, compose, move):
    keras.utils.set_random_seed(0)
    model = CoPartModel(num_parts=1, preset="tiny", image_size=SIZE * 4, compose_warps=compose)
    model.build()
    start = (-0.1, 0.05)
    # Latent maps [B, h, w, K+1, C]: background empty, part 1 holds the blob in every channel.
    blob = _blob(*start)[..., None, :]  # [1, h, w, 1, 1]
    channels = model.preset.latent_channels
    maps = np.concatenate([np.zeros_like(blob), blob], axis=3).repeat(channels, axis=-1)
    source = _pose(*start)[None, None]
    target = _pose(start[0] + move[0], start[1] + move[1])[None, None]
    warped = model._training_warps(tf.constant(maps), source, target).numpy()
    source_rec, retarget, _ = np.split(warped, 3, axis=0)
    self.assertAllClose(_centroid(source_rec[0, ..., 0]), start, atol=0.02)
    self.assertAllClose(_centroid(retarget[0, ..., 0]), np.add(start, move), atol=0.02)


class GradientTest(tf.test.TestCase):
  def test_reconstruction_gradient_points_along_the_motion(self):
    """d(L1 of the re-posed source vs the target)/d(target shift) points toward the true motion."""
    start, move = np.array([-0.2, 0.1]), np.array([0.12, -0.08])
    source = _blob(*start, sigma=0.15)
    target = _blob(*(start + move), sigma=0.15)
    source_pose = tf.constant(_pose(*start)[None])
    for guess in (start, start + 0.5 * move):
      target_shift = tf.Variable(guess[None].astype(np.float32))
      with tf.GradientTape() as tape:
        linear = tf.constant(_pose(0, 0)[None, :, :2])
        target_pose = tf.concat([linear, target_shift[..., None]], axis=-1)
        moved = warp_lib.warp_affine(
          source, affine_lib.compose(source_pose, affine_lib.invert(target_pose))
        )
        loss = tf.reduce_mean(tf.abs(moved - target))
      step = -tape.gradient(loss, target_shift).numpy()[0]
      cosine = step @ move / (np.linalg.norm(step) * np.linalg.norm(move))
      self.assertGreater(cosine, 0.9, f"descent {step} vs motion {move} from {guess}")


class PosePriorTest(tf.test.TestCase):
  def test_prior_peaks_at_the_pose_with_its_shape(self):
    # A part at (0.3, -0.2), twice as long along x as along y, rotated by 90 degrees.
    pose = np.array([[[[0.0, -0.1, 0.3], [0.2, 0.0, -0.2]]]], np.float32)
    prior = copart_model.pose_log_prior(tf.constant(pose), SIZE, radius=1.0).numpy()[0, ..., 0]
    self.assertEqual(prior.shape, (SIZE, SIZE))
    peak = np.unravel_index(np.argmax(prior), prior.shape)
    grid = grid_lib.make_grid_np(SIZE, SIZE)
    self.assertAllClose(grid[peak], [0.3, -0.2], atol=2.0 / SIZE)
    density = np.exp(prior)
    centre = _centroid(density)
    d = grid - centre
    cov = np.einsum("hw,hwi,hwj->ij", density, d, d) / density.sum()
    linear = pose[0, 0, :, :2]
    self.assertAllClose(cov, linear @ linear.T, atol=2e-3)

  def test_prior_changes_masks_only_when_enabled(self):
    images = tf.constant(np.random.default_rng(0).random((2, SIZE, SIZE, 3)), tf.float32)
    outputs = []
    for radius in (0.0, 1.5):
      keras.utils.set_random_seed(0)
      model = CoPartModel(num_parts=3, preset="tiny", image_size=SIZE, pose_prior_radius=radius)
      model.build()
      outputs.append(model(images)["masks"].numpy())
    self.assertGreater(np.abs(outputs[0] - outputs[1]).max(), 1e-3)


class HeatmapShiftTest(tf.test.TestCase):
  def test_shift_is_the_heatmap_soft_argmax_and_follows_a_translation(self):
    keras.utils.set_random_seed(0)
    head = TransformHead(num_parts=2, preset="tiny", shift_from="heatmap")
    features = np.zeros((2, 16, 16, 16), np.float32)
    features[0, 4, 3] = 40.0  # a single hot feature pixel ...
    features[1, 4 + 6, 3 + 5] = 40.0  # ... and the same pixel moved by (5, 6) feature pixels
    head.build(features.shape)
    # A heatmap conv that reads channel 0 at its centre tap only: logits = 1 * feature[..., 0].
    kernel = np.zeros(head.heatmap.kernel.shape, np.float32)
    kernel[1, 1, 0, :] = 1.0
    head.heatmap.kernel.assign(kernel)
    head.heatmap.bias.assign(np.zeros(head.heatmap.bias.shape, np.float32))
    shift = head(tf.constant(features))["shift"].numpy()
    grid = grid_lib.make_grid_np(16, 16)
    self.assertAllClose(shift[0, 0], grid[4, 3], atol=1e-3)
    self.assertAllClose(shift[1, 0] - shift[0, 0], [5 * 2 / 16, 6 * 2 / 16], atol=1e-3)

  def test_initial_spread_separates_the_heatmap_centres(self):
    head = TransformHead(num_parts=4, preset="tiny", shift_from="heatmap", initial_spread=0.5)
    features = tf.zeros((1, 16, 16, 16))
    head.build(features.shape)
    shift = head(features)["shift"].numpy()[0]
    distances = np.linalg.norm(shift[:, None] - shift[None], axis=-1)[np.triu_indices(4, 1)]
    self.assertGreater(distances.min(), 0.2)  # flat heatmaps would put every part at (0, 0)
    self.assertAllClose(shift, transform_head_lib.sunflower(4, 0.5), atol=0.1)

  def test_initial_scale(self):
    head = TransformHead(num_parts=3, preset="tiny", initial_scale=0.25)
    scale = head(tf.zeros((2, 16, 16, 16)))["scale"].numpy()
    self.assertAllClose(scale, np.full((2, 3, 2), 0.25), atol=1e-5)


class PriorGradientTest(tf.test.TestCase):
  def test_prior_moves_a_part_but_cannot_shrink_it(self):
    pose = tf.Variable([[[[0.2, 0.0, 0.1], [0.0, 0.2, -0.1]]]], dtype=tf.float32)
    with tf.GradientTape() as tape:
      prior = copart_model.pose_log_prior(pose, SIZE, radius=1.0)
      # Any loss that prefers a smaller or a moved blob.
      loss = -tf.reduce_sum(tf.exp(prior)) + tf.reduce_sum(tf.exp(prior)[:, :4])
    grad = tape.gradient(loss, pose).numpy()[0, 0]
    self.assertAllEqual(grad[:, :2], np.zeros((2, 2)))
    self.assertGreater(np.abs(grad[:, 2]).max(), 1e-3)


class WarpSourcePixelsTest(tf.test.TestCase):
  def _model(self, **kwargs):
    keras.utils.set_random_seed(0)
    model = CoPartModel(num_parts=2, preset="tiny", image_size=SIZE, **kwargs)
    model.build()
    return model

  def test_parts_start_as_the_source_and_the_background_as_its_median(self):
    rng = np.random.default_rng(0)
    images = np.broadcast_to(rng.random((2, 1, 1, 3)), (2, SIZE, SIZE, 3)).copy()
    images[:, 10:14, 10:14] = [1.0, 0.0, 0.0]  # a small object on a plain background
    out = self._model(warp_source_pixels=True)(tf.constant(images, tf.float32))
    parts = out["part_images"].numpy()
    self.assertAllClose(parts[..., 1, :], images, atol=1e-6)
    self.assertAllClose(parts[..., 2, :], images, atol=1e-6)
    self.assertAllClose(
      parts[..., 0, :], np.broadcast_to(images[:, :1, :1], images.shape), atol=1e-6
    )
    # The paper's decoder draws every colour itself: no part starts as the source.
    plain = self._model()(tf.constant(images, tf.float32))["part_images"].numpy()
    self.assertGreater(np.abs(plain[..., 1, :] - images).mean(), 0.05)

  def test_retargeted_part_shows_the_source_moved_by_the_pose_change(self):
    model = self._model(warp_source_pixels=True, compose_warps=True)
    images = np.tile(_blob(-0.3, 0.0), [1, 1, 1, 3])
    source = tf.constant(np.stack([_pose(-0.3, 0.0), _pose(0.3, 0.3)])[None])
    target = tf.constant(np.stack([_pose(0.1, 0.2), _pose(0.3, 0.3)])[None])
    out = model._retarget(tf.constant(images), model.encode(images)["part_maps"], source, target)
    moved = out["part_images"].numpy()[0, ..., 1, 0]
    self.assertAllClose(_centroid(moved), [0.1, 0.2], atol=0.03)


def _ladder_model(**kwargs):
  """A tiny, seeded, built K = 2 model with the ladder configs' assembly (compose, prior, pixels)."""
  keras.utils.set_random_seed(0)
  model = CoPartModel(
    num_parts=2,
    preset="tiny",
    image_size=SIZE,
    compose_warps=True,
    pose_prior_radius=1.0,
    warp_source_pixels=True,
    **kwargs,
  )
  model.build()
  return model


class DetachBackgroundPosesTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters(True, False)
  def test_background_terms_see_the_pose_prior_as_a_constant(self, detach):
    model = _ladder_model(detach_background_poses=detach)
    rng = np.random.default_rng(0)
    source, target = (tf.constant(rng.random((2, SIZE, SIZE, 3)), tf.float32) for _ in range(2))
    warp = tf.constant(np.tile(_pose(0.0, 0.0, 1.0), [2, 1, 1]))
    head = model.transform_head.trainable_variables
    weights = tf.constant(rng.random((2, SIZE, SIZE, 3)), tf.float32)  # breaks the symmetry
    with tf.GradientTape() as tape:
      out = model.forward_pair(source, target, warp)
      seen = out["background_masks"]
      used = out["target_masks"]
      gap = tf.reduce_sum((used - seen) * weights)
    self.assertAllClose(seen, used, atol=1e-6)  # the same masks, only the gradients differ
    difference = tape.gradient(gap, head)
    norm = float(tf.linalg.global_norm([g for g in difference if g is not None]))
    if detach:
      self.assertGreater(norm, 1e-3)  # the prior and coverage paths into the poses are cut
    else:
      self.assertEqual(norm, 0.0)


class RedundancyTermTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters(0.0, 1.0)
  def test_redundancy_charges_masks_where_parts_copy_the_background(self, weight):
    model = _ladder_model(redundancy=weight)
    images = np.full((2, SIZE, SIZE, 3), 0.3, np.float32)
    images[:, 10:14, 10:14] = [1.0, 0.0, 0.0]  # a small object on a plain background
    warp = tf.constant(np.tile(_pose(0.0, 0.0, 1.0), [2, 1, 1]))
    out = model.forward_pair(images, images, warp)
    losses = model.compute_losses(images, images, warp, out)
    if not weight:
      self.assertEqual(float(losses["redundancy"]), 0.0)
      return
    expected = background_lib.redundancy_loss(
      out["source_masks"], out["source_part_images"], images
    ) + background_lib.redundancy_loss(out["background_masks"], out["target_part_images"], images)
    self.assertAllClose(losses["redundancy"], expected)
    # At initialisation the parts' layers are the source: they copy the plain background
    # around the object, so their masks there are charged.
    self.assertGreater(float(losses["redundancy"]), 0.01)


class SeekTermTest(tf.test.TestCase):
  def test_seek_term_draws_the_heatmaps_towards_an_object_far_from_every_part(self):
    model = _ladder_model(seek=1.0, shift_from="heatmap", initial_spread=0.5, initial_scale=0.25)
    images = np.full((2, SIZE, SIZE, 3), 0.3, np.float32)
    images[:, 24:30, 24:30] = [1.0, 0.0, 0.0]  # an object far from both parts' start points
    warp = tf.constant(np.tile(_pose(0.0, 0.0, 1.0), [2, 1, 1]))
    head = model.transform_head
    with tf.GradientTape() as tape:
      out = model.forward_pair(images, images, warp)
      losses = model.compute_losses(images, images, warp, out)
    expected = discovery_lib.seek_loss(
      out["source_heatmap_logits"], images, out["source_part_images"][..., 0, :]
    ) + discovery_lib.seek_loss(
      out["target_heatmap_logits"], images, out["target_part_images"][..., 0, :]
    )
    self.assertAllClose(losses["seek"], expected)
    self.assertGreater(float(losses["seek"]), 0.0)
    # Descent raises every part's heatmap start bias on the object's cells.
    grad = tape.gradient(losses["seek"], head.heatmap_bias).numpy()  # [h*w, K]
    h = int(np.sqrt(grad.shape[0]))
    cells = grad.reshape(h, h, -1)[h * 24 // SIZE : h * 30 // SIZE, h * 24 // SIZE : h * 30 // SIZE]
    self.assertTrue(np.all(cells < 0.0))

  def test_seek_needs_heatmap_shifts(self):
    with self.assertRaisesRegex(ValueError, "seek"):
      CoPartModel(num_parts=2, preset="tiny", image_size=SIZE, seek=1.0)


class ConsistencyTermTest(tf.test.TestCase):
  def test_consistency_term_is_wired_to_the_source_and_target_heatmaps(self):
    model = _ladder_model(consistency=1.0, shift_from="heatmap", initial_scale=0.25)
    source = np.full((2, SIZE, SIZE, 3), 0.3, np.float32)
    source[:, 8:16, 8:14] = [1.0, 0.0, 0.0]
    source[:, 20:26, 18:28] = [0.0, 0.0, 1.0]
    target = np.roll(source, 3, axis=2)
    warp = affine_lib.identity([2])
    with tf.GradientTape() as tape:
      out = model.forward_pair(source, target, warp)
      losses = model.compute_losses(source, target, warp, out)
    expected = discovery_lib.consistency_loss(
      out["source_heatmap_logits"], source, out["source_part_images"][..., 0, :]
    ) + discovery_lib.consistency_loss(
      out["target_heatmap_logits"], target, out["target_part_images"][..., 0, :]
    )
    self.assertAllClose(losses["consistency"], expected)
    self.assertGreater(float(losses["consistency"]), 0.0)
    grad = tape.gradient(losses["consistency"], model.transform_head.heatmap.kernel)
    self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0)

  def test_consistency_needs_heatmap_shifts(self):
    with self.assertRaisesRegex(ValueError, "consistency"):
      CoPartModel(num_parts=2, preset="tiny", image_size=SIZE, consistency=1.0)


class ClaimsGateTest(parameterized.TestCase, tf.test.TestCase):
  """Part 1's heatmap logits dominate every cell of the left half, part 2's the right half."""

  def _model(self, gate):
    model = _ladder_model(gate_masks_by_claims=gate, shift_from="heatmap", initial_scale=0.5)
    grid = model.transform_head.heatmap_bias.shape[0]
    side = int(round(grid**0.5))
    left = np.tile(np.arange(side) < side // 2, side)  # cell order: row-major
    bias = np.stack([np.where(left, 20.0, -20.0), np.where(left, -20.0, 20.0)], -1)
    model.transform_head.heatmap_bias.assign(bias.astype(np.float32))
    return model

  @parameterized.parameters(True, False)
  def test_a_part_is_seen_only_where_it_claims(self, gate):
    model = self._model(gate)
    images = tf.constant(np.random.default_rng(0).random((2, SIZE, SIZE, 3)), tf.float32)
    masks = model(images)["masks"].numpy()
    # Each part's pose is the centre of its own half (its heatmap); its prior blob is larger than
    # the half, so without the gate it spills over the middle into the other half.
    spill = max(masks[:, :, SIZE // 2 + 2 :, 1].max(), masks[:, :, : SIZE // 2 - 2, 2].max())
    if gate:
      self.assertLess(spill, 1e-4)
    else:
      self.assertGreater(spill, 1e-2)

  def test_gate_moves_with_the_part_and_trains_the_claims(self):
    model = self._model(True)
    source = tf.constant(np.random.default_rng(1).random((2, SIZE, SIZE, 3)), tf.float32)
    warp = affine_lib.identity([2])
    with tf.GradientTape() as tape:
      out = model.forward_pair(source, source, warp)
      losses = model.compute_losses(source, source, warp, out)
    grad = tape.gradient(losses["rec_target"], model.transform_head.heatmap.kernel)
    self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0)
    self.assertLess(float(out["target_masks"][:, :, SIZE // 2 + 2 :, 1].numpy().max()), 1e-4)

  def test_gate_needs_heatmap_shifts(self):
    with self.assertRaisesRegex(ValueError, "gate_masks_by_claims"):
      CoPartModel(num_parts=2, preset="tiny", image_size=SIZE, gate_masks_by_claims=True)


class FlatPartColoursTest(tf.test.TestCase):
  def _scene(self):
    """A red square and a blue one on plain grey, and a pose on each: `[1, S, S, 3]`, `[1, 2, 2, 3]`."""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    images[0, 6:12, 6:12] = [1.0, 0.0, 0.0]  # centre (-0.44, -0.44) in normalised coordinates
    images[0, 20:26, 20:26] = [0.0, 0.0, 1.0]  # centre (0.44, 0.44)
    poses = np.stack([_pose(-0.44, -0.44, 0.1), _pose(0.44, 0.44, 0.1)])[None]
    return tf.constant(images), tf.constant(poses)

  def test_each_part_takes_the_colour_under_its_pose(self):
    model = _ladder_model(flat_part_colours=True)
    images, poses = self._scene()
    colours = model.part_colours(images, poses).numpy()[0]
    self.assertAllClose(colours, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], atol=0.02)

  def test_retargeted_parts_show_flat_colours_not_the_moved_source(self):
    images, poses = self._scene()
    target = tf.constant(np.stack([_pose(0.0, 0.0, 0.1), _pose(0.44, 0.44, 0.1)])[None])
    for flat in (True, False):
      model = _ladder_model(flat_part_colours=flat)
      maps = model.encode(images)["part_maps"]
      parts = model._retarget(images, maps, poses, target)["part_images"].numpy()[0, ..., 1, :]
      spread = parts.reshape(-1, 3).std(axis=0).max()
      if flat:  # one colour over the whole layer (the decoder's residual starts at zero)
        self.assertAllClose(parts[0, 0], [1.0, 0.0, 0.0], atol=0.02)
        self.assertLess(spread, 1e-4)
      else:  # the moved source: the red square at the frame centre, grey and blue elsewhere
        self.assertGreater(spread, 0.1)

  def test_flat_colours_need_source_pixels(self):
    with self.assertRaisesRegex(ValueError, "flat_part_colours needs warp_source_pixels"):
      CoPartModel(num_parts=2, preset="tiny", image_size=SIZE, flat_part_colours=True)


class HeatmapLinearTest(tf.test.TestCase):
  def test_rotation_and_scale_are_read_under_each_parts_heatmap(self):
    head = TransformHead(
      num_parts=2, preset="tiny", shift_from="heatmap", linear_from="heatmap", initial_scale=0.25
    )
    features = np.zeros((1, 16, 16, 16), np.float32)
    features[0, 4, 3, 0] = 40.0  # part 1's heatmap peaks here (channel 0) ...
    features[0, 12, 10, 1] = 40.0  # ... part 2's here (channel 1)
    head.build(features.shape)
    self.assertEmpty(head.convs)  # no regression trunk: nothing of it would be trained
    start = head(tf.constant(features))
    self.assertAllClose(start["scale"].numpy(), np.full((1, 2, 2), 0.25), atol=1e-5)
    self.assertAllClose(start["cos_sin"].numpy(), np.tile([1.0, 0.0], (1, 2, 1)), atol=1e-5)
    kernel = np.zeros(head.heatmap.kernel.shape, np.float32)
    kernel[1, 1, 0, 0] = kernel[1, 1, 1, 1] = 1.0
    head.heatmap.kernel.assign(kernel)
    # The linear map reads channel 2 at every cell; only part 1's cell has it: turned 90 degrees.
    features[0, 4, 3, 2] = 1.0
    linear_kernel = np.zeros(head.linear_map.kernel.shape, np.float32)
    gain = transform_head_lib.LINEAR_MAP_GAIN
    linear_kernel[1, 1, 2, 0] = -1.0 / gain  # part 1's cos: 1 -> 0
    linear_kernel[1, 1, 2, 1] = 1.0 / gain  # part 1's sin: 0 -> 1
    head.linear_map.kernel.assign(linear_kernel)
    cos_sin = head(tf.constant(features))["cos_sin"].numpy()[0]
    self.assertAllClose(cos_sin, [[0.0, 1.0], [1.0, 0.0]], atol=1e-3)

  def test_linear_from_heatmap_needs_heatmap_shifts(self):
    with self.assertRaisesRegex(ValueError, "needs shift_from"):
      TransformHead(num_parts=2, preset="tiny", linear_from="heatmap")


class LogScaleTest(tf.test.TestCase):
  def test_scales_below_the_tanh_floor_keep_a_gradient(self):
    z = tf.Variable([transform_head_lib._log_scale_inverse(0.05)])
    with tf.GradientTape() as tape:
      scale = transform_head_lib._log_scale(z)
    self.assertAllClose(scale.numpy(), [0.05], atol=1e-6)
    # d(log scale)/dz is ~1 at 0.05, where 0.9 tanh(z) + 1 cannot even go.
    self.assertGreater(tape.gradient(scale, z).numpy()[0] / 0.05, 0.5)
    head = TransformHead(num_parts=2, preset="tiny", scale_activation="log", initial_scale=0.05)
    self.assertAllClose(head(tf.zeros((1, 16, 16, 16)))["scale"].numpy(), np.full((1, 2, 2), 0.05))
    with self.assertRaisesRegex(ValueError, "initial_scale"):
      TransformHead(num_parts=2, preset="tiny", initial_scale=0.05)


class ColourMattingTest(tf.test.TestCase):
  def test_log_odds_cross_zero_where_the_part_covers_half_the_pixel(self):
    model = _ladder_model(flat_part_colours=True, colour_matting_gain=4.0)
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)  # grey background
    images[0, 6:12, 6:12] = [1.0, 0.0, 0.0]  # part 1's red square
    images[0, 12, 6:12] = [0.75, 0.25, 0.25]  # its anti-aliased edge: half red, half grey
    images[0, 20:26, 20:26] = [0.0, 0.0, 1.0]  # part 2's blue square
    images = tf.constant(images)
    poses = tf.constant(np.stack([_pose(-0.44, -0.44, 0.1), _pose(0.44, 0.44, 0.1)])[None])
    background = copart_model._background_colours(images)
    colours = model.part_colours(images, poses, background=background)
    depth = model._matting_depth(images, background, colours, None).numpy()[..., 0]  # [K, S, S]
    self.assertAllClose(depth[0, 8, 8], 4.0, atol=0.15)  # inside part 1's square
    self.assertAllClose(depth[0, 12, 8], 0.0, atol=0.2)  # its half-covered edge
    self.assertAllClose(depth[0, 0, 0], -4.0, atol=0.1)  # background
    self.assertLess(depth[0, 22, 22], 0.0)  # the blue square is not red
    self.assertAllClose(depth[1, 22, 22], 4.0, atol=0.15)
    # Moved with the part: shifting part 1's pixels by +4 px in x moves its log-odds by +4 px.
    shift = 4 * 2.0 / SIZE
    motion = tf.constant(np.stack([_pose(-shift, 0.0, 1.0), _pose(0.0, 0.0, 1.0)])[None])
    moved = model._matting_depth(images, background, colours, motion).numpy()[0, ..., 0]
    self.assertAllClose(moved[8, 8 + 4], 4.0, atol=0.15)
    self.assertAllClose(moved[8, 6 + 4 - 1], -4.0, atol=0.1)

  def test_the_log_odds_reach_the_assembled_masks(self):
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    images[0, 6:12, 6:12] = [1.0, 0.0, 0.0]
    poses = np.stack([_pose(-0.44, -0.44, 0.1), _pose(0.44, 0.44, 0.1)])[None]
    images, poses = tf.constant(images), tf.constant(poses)
    masks = {}
    for gain in (0.0, 8.0):
      model = _ladder_model(flat_part_colours=True, colour_matting_gain=gain)
      maps = model.encode(images)["part_maps"]
      out = model._retarget(images, maps, poses, poses)
      masks[gain] = tf.nn.softmax(out["depth"], -1).numpy()[0, ..., 1]
    # With the term, part 1 takes its square and leaves the grey around it to the background.
    self.assertGreater(masks[8.0][8, 8], masks[0.0][8, 8])
    self.assertGreater(masks[8.0][8, 8], 0.9)
    self.assertLess(masks[8.0][8, 14], masks[0.0][8, 14])

  def test_without_flat_colours_alpha_is_the_distance_from_the_background(self):
    model = _ladder_model(colour_matting_gain=4.0)
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    images[0, 6:12, 6:12] = [0.3, 0.5, 0.5]  # a shaded object: 0.2 / 3 from the background
    images[0, 6:12, 12] = [0.47, 0.5, 0.5]  # a sliver: 0.01
    images = tf.constant(images)
    depth = model._matting_depth(images, copart_model._background_colours(images), None, None)
    depth = depth.numpy()[0, ..., 0]
    self.assertAllClose(depth[8, 8], 4.0 * (2 * (0.2 / 3) / 0.1 - 1), atol=1e-4)
    self.assertAllClose(depth[8, 12], 4.0 * (2 * 0.01 / 0.1 - 1), atol=1e-4)
    self.assertAllClose(depth[0, 0], -4.0)

  def test_decode_adds_the_shaded_matting_of_the_moved_pixels(self):
    model = _ladder_model(colour_matting_gain=4.0, background_colour="row_median")
    images = tf.random.stateless_uniform([1, SIZE, SIZE, 3], seed=[3, 4])
    motion = tf.constant(np.stack([_pose(0.1, 0.0, 1.0), _pose(0.0, -0.2, 0.9)])[None])
    latents = tf.random.stateless_normal(
      [3, SIZE // 4, SIZE // 4, model.preset.latent_channels], seed=[5, 6]
    )
    _, depth = model._decode(latents, images, [motion])
    _, decoded = model.decoder(latents)
    background = copart_model._background_colours(images, "row_median")
    matting = model._matting_depth(images, background, None, motion)
    self.assertAllClose(depth[1:] - decoded[1:], matting, atol=1e-5)
    self.assertAllClose(depth[:1], decoded[:1], atol=1e-6)  # not the background's

  def test_matting_needs_the_pixel_skip(self):
    with self.assertRaisesRegex(ValueError, "colour_matting_gain needs warp_source_pixels"):
      CoPartModel(num_parts=2, preset="tiny", image_size=SIZE, colour_matting_gain=4.0)


class BackgroundColourTest(parameterized.TestCase, tf.test.TestCase):
  def _scene(self):
    """A wall (rows 0-11) above a floor, a red post and a blue square on them."""
    images = np.zeros((1, SIZE, SIZE, 3), np.float32)
    images[0, :12] = [0.8, 0.8, 0.6]
    images[0, 12:] = [0.3, 0.2, 0.4]
    images[0, 4:28, 6:10] = [1.0, 0.0, 0.0]
    images[0, 20:26, 20:26] = [0.0, 0.0, 1.0]
    return tf.constant(images)

  def test_row_medians_are_the_wall_and_the_floor(self):
    images = self._scene()
    rows = copart_model._background_colours(images, "row_median").numpy()[0]
    self.assertAllClose(rows[:12], np.broadcast_to([0.8, 0.8, 0.6], (12, SIZE, 3)))
    self.assertAllClose(rows[12:], np.broadcast_to([0.3, 0.2, 0.4], (SIZE - 12, SIZE, 3)))
    frame = copart_model._background_colours(images).numpy()[0]
    self.assertAllClose(frame, np.broadcast_to([0.3, 0.2, 0.4], (SIZE, SIZE, 3)))  # the floor

  @parameterized.parameters("frame_median", "row_median")
  def test_the_background_layer_starts_from_the_estimate(self, mode):
    images = self._scene()
    model = _ladder_model(background_colour=mode)
    self.assertEqual(model(images)["masks"].shape, (1, SIZE, SIZE, 3))
    background = copart_model._background_colours(images, mode)
    skip = model._pixel_skip(images, background).numpy()  # background row, then the 2 parts
    self.assertAllClose(skip[0], background.numpy()[0])
    self.assertAllClose(skip[1], images.numpy()[0])
    self.assertEqual(CoPartModel.from_config(model.get_config()).background_colour, mode)

  def test_matting_measures_against_the_row_below_a_wall(self):
    images = self._scene()
    model = _ladder_model(
      flat_part_colours=True, colour_matting_gain=4.0, background_colour="row_median"
    )
    background = copart_model._background_colours(images, "row_median")
    colours = tf.constant([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    depth = model._matting_depth(images, background, colours, None).numpy()[..., 0]
    self.assertAllClose(depth[0, 8, 8], 4.0, atol=0.15)  # the post, on the wall
    self.assertAllClose(depth[0, 20, 8], 4.0, atol=0.15)  # the post, on the floor
    self.assertAllClose(depth[0, 2, 20], -4.0, atol=0.1)  # wall
    self.assertAllClose(depth[0, 30, 20], -4.0, atol=0.1)  # floor

  def test_unknown_mode_is_rejected(self):
    with self.assertRaisesRegex(ValueError, "background_colour must be"):
      _ladder_model(background_colour="mean")


class PresenceTest(tf.test.TestCase):
  def _model(self, threshold):
    return _ladder_model(
      shift_from="heatmap", gate_masks_by_claims=True, presence_threshold=threshold
    )

  def test_a_part_that_claims_no_content_is_hidden(self):
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    images[0, 4:12, 4:12] = [1.0, 0.0, 0.0]  # one red square, in cells (1..2, 1..2)
    images = tf.constant(images)
    logits = np.zeros((1, SIZE // 4, SIZE // 4, 2), np.float32)
    logits[0, 1:3, 1:3, 0] = 10.0  # part 1 claims the square's cells; part 2 only background
    logits = tf.constant(logits)
    background = copart_model._background_colours(images)
    shares = discovery_lib.claimed_shares(logits, images, images * 0 + 0.5)
    self.assertAllClose(tf.reduce_sum(shares, -1).numpy(), [1.0], atol=1e-5)
    log_presence = self._model(0.05)._log_presence(images, background, logits).numpy()[0]
    self.assertAllClose(log_presence[0], 0.0, atol=1e-5)  # present: untouched
    self.assertLess(log_presence[1], -5.0)  # absent: hidden
    # In the decoded depth: part 2's logits drop by that much everywhere, part 1's do not.
    maps = tf.zeros((1, SIZE // 4, SIZE // 4, 3, self._model(0.0).preset.latent_channels))
    depth = {}
    for threshold in (0.0, 0.05):
      model = self._model(threshold)
      fg = model._fold_foreground(maps, logits)[..., :-1]
      latents = tf.concat([maps[:, :, :, 0], fg], axis=0)
      depth[threshold] = model._decode(latents, images, heatmap_logits=logits)[1].numpy()[..., 0]
    drop = depth[0.0] - depth[0.05]  # rows: background, part 1, part 2
    self.assertAllClose(drop[:2], np.zeros_like(drop[:2]), atol=1e-5)
    self.assertAllClose(drop[2], np.full_like(drop[2], -log_presence[1]), atol=1e-4)

  def test_presence_needs_the_gate(self):
    with self.assertRaisesRegex(ValueError, "presence_threshold needs gate_masks_by_claims"):
      _ladder_model(shift_from="heatmap", presence_threshold=0.05)


class DepthBoundTest(tf.test.TestCase):
  def test_decoded_depth_is_bounded_and_keeps_a_gradient(self):
    images = tf.constant(np.full((1, SIZE, SIZE, 3), 0.5, np.float32))
    for bound in (0.0, 5.0):
      model = _ladder_model(depth_bound=bound)
      bias = model.decoder.out.bias
      # A decoder that vetoes every layer (its output channels are (r, g, b, depth) per sub-pixel).
      bias.assign(np.where(np.arange(bias.shape[0]) % 4 == 3, -10.0, bias.numpy()))
      with tf.GradientTape() as tape:
        depth = model(images)["depth"]
        total = tf.reduce_sum(depth[..., 0])  # the background's row: the decoder's depth alone
      grad = tape.gradient(total, model.decoder.out.trainable_variables)[1].numpy()[3::4]
      lowest = float(tf.reduce_min(depth[..., 0]))
      if bound:  # -5 tanh(2) = -4.8: a mask e^5 smaller, not e^10, and a living gradient
        self.assertAllClose(lowest, -5.0 * np.tanh(2.0), atol=1e-4)
        self.assertAllClose(grad / (SIZE * SIZE / 4), np.full(4, 1 - np.tanh(2.0) ** 2), atol=1e-4)
      else:
        self.assertAllClose(lowest, -10.0, atol=1e-4)

  def test_a_negative_bound_is_refused(self):
    with self.assertRaisesRegex(ValueError, "depth_bound"):
      _ladder_model(depth_bound=-1.0)


if __name__ == "__main__":
  tf.test.main()
