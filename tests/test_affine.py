"""Tests of copart_tf.ops.affine: representations, composition, inversion, poses."""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.ops import affine as affine_lib


def _random_affines(shape, seed=0, dtype=np.float64):
  """Well-conditioned random `shape + [2, 3]` affines: rotation * scale (+ shear) | shift."""
  rng = np.random.default_rng(seed)
  theta = rng.uniform(-math.pi, math.pi, size=shape)
  scale = rng.uniform(0.5, 1.5, size=tuple(shape) + (2,))
  shear = rng.uniform(-0.3, 0.3, size=shape)
  shift = rng.uniform(-0.5, 0.5, size=tuple(shape) + (2,))
  cos, sin = np.cos(theta), np.sin(theta)
  rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
  upper = np.zeros(tuple(shape) + (2, 2))
  upper[..., 0, 0] = scale[..., 0]
  upper[..., 0, 1] = shear
  upper[..., 1, 1] = scale[..., 1]
  linear = rot @ upper
  return np.concatenate([linear, shift[..., None]], axis=-1).astype(dtype)


def _homogeneous_np(affines):
  last = np.broadcast_to([0.0, 0.0, 1.0], affines.shape[:-2] + (1, 3))
  return np.concatenate([affines, last], axis=-2)


class RepresentationTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("single", ()), ("batch", (4,)), ("batch_parts", (3, 5)))
  def test_params_round_trip(self, shape):
    affines = _random_affines(shape)
    params = affine_lib.to_params(affines)
    self.assertEqual(params.shape, shape + (6,))
    # (a, b, tx, c, d, ty): the rows of [A | t], flattened.
    self.assertAllClose(params[..., 2], affines[..., 0, 2])
    self.assertAllClose(params[..., 3], affines[..., 1, 0])
    self.assertAllClose(affine_lib.from_params(params), affines)

  @parameterized.named_parameters(("single", ()), ("batch", (4,)), ("batch_parts", (3, 5)))
  def test_homogeneous_round_trip(self, shape):
    affines = _random_affines(shape)
    matrices = affine_lib.to_homogeneous(affines)
    self.assertEqual(matrices.shape, shape + (3, 3))
    self.assertAllClose(matrices, _homogeneous_np(affines))
    self.assertAllClose(affine_lib.from_homogeneous(matrices), affines)

  def test_identity(self):
    eye = affine_lib.identity((2, 3))
    self.assertEqual(eye.shape, (2, 3, 2, 3))
    self.assertEqual(eye.dtype, tf.float32)
    self.assertAllClose(affine_lib.to_homogeneous(eye), np.broadcast_to(np.eye(3), (2, 3, 3, 3)))
    points = np.random.default_rng(1).normal(size=(2, 3, 4, 2)).astype(np.float32)
    self.assertAllClose(affine_lib.apply(eye, points), points)


class AlgebraTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("single", ()), ("batch", (4,)), ("batch_parts", (3, 5)))
  def test_compose_is_matrix_product(self, shape):
    outer = _random_affines(shape, seed=1)
    inner = _random_affines(shape, seed=2)
    expected = (_homogeneous_np(outer) @ _homogeneous_np(inner))[..., :2, :]
    self.assertAllClose(affine_lib.compose(outer, inner), expected, atol=1e-12)

  def test_compose_order_applies_inner_first(self):
    outer = _random_affines((), seed=3)
    inner = _random_affines((), seed=4)
    points = np.random.default_rng(5).normal(size=(6, 2))
    self.assertAllClose(
      affine_lib.apply(affine_lib.compose(outer, inner), points),
      affine_lib.apply(outer, affine_lib.apply(inner, points)),
      atol=1e-12,
    )

  @parameterized.named_parameters(("single", ()), ("batch", (4,)), ("batch_parts", (3, 5)))
  def test_invert(self, shape):
    affines = _random_affines(shape, seed=6)
    inverse = affine_lib.invert(affines)
    eye = affine_lib.identity(shape, tf.float64)
    self.assertAllClose(affine_lib.compose(affines, inverse), eye, atol=1e-12)
    self.assertAllClose(affine_lib.compose(inverse, affines), eye, atol=1e-12)
    self.assertAllClose(
      affine_lib.to_homogeneous(inverse), np.linalg.inv(_homogeneous_np(affines)), atol=1e-12
    )

  def test_invert_float32_and_gradient(self):
    affines = tf.constant(_random_affines((3,), seed=7, dtype=np.float32))
    with tf.GradientTape() as tape:
      tape.watch(affines)
      loss = tf.reduce_sum(affine_lib.invert(affines))
    gradient = tape.gradient(loss, affines)
    self.assertEqual(gradient.dtype, tf.float32)
    self.assertTrue(np.all(np.isfinite(gradient.numpy())))

  def test_apply(self):
    affines = _random_affines((2,), seed=8)
    points = np.random.default_rng(9).normal(size=(2, 5, 2))
    expected = np.einsum("nij,npj->npi", affines[..., :2], points) + affines[:, None, :, 2]
    self.assertAllClose(affine_lib.apply(affines, points), expected, atol=1e-12)
    # A point and its image under the inverse go back to where they came from.
    moved = affine_lib.apply(affines, points)
    self.assertAllClose(affine_lib.apply(affine_lib.invert(affines), moved), points, atol=1e-12)


class PoseTest(tf.test.TestCase, parameterized.TestCase):
  def test_from_pose_matches_definition(self):
    theta, sx, sy, tx, ty = 0.7, 0.4, 1.3, 0.2, -0.35
    cos_sin = tf.constant([math.cos(theta), math.sin(theta)], tf.float64)
    affine = affine_lib.from_pose(
      cos_sin, tf.constant([sx, sy], tf.float64), tf.constant([tx, ty], tf.float64)
    )
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = np.concatenate([rot @ np.diag([sx, sy]), [[tx], [ty]]], axis=1)
    self.assertAllClose(affine, expected, atol=1e-12)

  @parameterized.named_parameters(("single", ()), ("batch", (4,)), ("batch_parts", (3, 5)))
  def test_pose_round_trip(self, shape):
    rng = np.random.default_rng(10)
    theta = rng.uniform(-math.pi + 1e-3, math.pi, size=shape)
    scale = rng.uniform(0.1, 1.9, size=shape + (2,))
    shift = rng.uniform(-1, 1, size=shape + (2,))
    cos_sin = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    affines = affine_lib.from_pose(tf.constant(cos_sin), tf.constant(scale), tf.constant(shift))
    theta_back, scale_back, shift_back = affine_lib.to_pose(affines)
    self.assertAllClose(theta_back, theta, atol=1e-10)
    self.assertAllClose(scale_back, scale, atol=1e-10)
    self.assertAllClose(shift_back, shift, atol=1e-12)
    again = affine_lib.from_pose(
      tf.stack([tf.cos(theta_back), tf.sin(theta_back)], -1), scale_back, shift_back
    )
    self.assertAllClose(again, affines, atol=1e-10)

  def test_random_affine_ranges(self):
    seed = tf.constant([3, 4], tf.int32)
    affines = affine_lib.random_affine(256, seed)
    self.assertEqual(affines.shape, (256, 2, 3))
    self.assertEqual(affines.dtype, tf.float32)
    theta, scale, shift = (x.numpy() for x in affine_lib.to_pose(affines))
    self.assertTrue(np.all(scale >= 0.75 - 1e-5) and np.all(scale < 1.0 + 1e-5))
    self.assertTrue(np.all(np.abs(shift) <= 0.2 + 1e-6))
    # Rotations cover the whole circle; shifts are symmetric around 0.
    self.assertGreater(np.ptp(theta), 1.8 * math.pi)
    self.assertLess(shift.min(), -0.15)
    self.assertGreater(shift.max(), 0.15)
    # Stateless: same seed, same draw; another seed, another draw.
    self.assertAllEqual(affine_lib.random_affine(256, seed), affines)
    self.assertNotAllClose(affine_lib.random_affine(256, tf.constant([3, 5], tf.int32)), affines)

  def test_random_affine_custom_ranges(self):
    affines = affine_lib.random_affine(
      64, tf.constant([1, 2]), max_rotation=0.1, scale_range=(0.5, 0.6), max_shift=0.05
    )
    theta, scale, shift = (x.numpy() for x in affine_lib.to_pose(affines))
    self.assertTrue(np.all((theta >= -1e-6) & (theta < 0.1 + 1e-6)))
    self.assertTrue(np.all((scale >= 0.5 - 1e-6) & (scale < 0.6 + 1e-6)))
    self.assertTrue(np.all(np.abs(shift) <= 0.05 + 1e-7))


if __name__ == "__main__":
  tf.test.main()
