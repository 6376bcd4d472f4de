"""Tests of copart_tf.ops.warp: equal to ImageProjectiveTransformV3 forward, exact gradients, XLA."""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.ops import affine as affine_lib
from copart_tf.ops import warp as warp_lib

# Irrational offsets keep sample points off the integer lattice, where bilinear sampling has
# kinks and finite differences are meaningless.
_OFFSET = math.sqrt(2.0) / 10.0


def _images(shape, seed=0, dtype=np.float32):
  return np.random.default_rng(seed).random(shape).astype(dtype)


def _random_affines(n, seed=0, zoom=(0.7, 1.4)):
  """`[n, 2, 3]` output->input normalised affines: rotation and scale, shift (off the lattice)."""
  rng = np.random.default_rng(seed)
  theta = rng.uniform(-0.6, 0.6, n)
  scale = rng.uniform(zoom[0], zoom[1], (n, 2))
  shift = rng.uniform(-0.4, 0.4, (n, 2)) + _OFFSET / 7
  return affine_lib.from_pose(
    tf.constant(np.stack([np.cos(theta), np.sin(theta)], -1)),
    tf.constant(scale),
    tf.constant(shift),
  ).numpy()


def _pixel_rows(affines, input_size, output_size):
  """Normalised output->input `[N, 2, 3]` -> the core op's `[N, 8]` rows in pixel coordinates."""
  (in_h, in_w), (out_h, out_w) = input_size, output_size
  to_in_pixels = np.array([[in_w / 2, 0, (in_w - 1) / 2], [0, in_h / 2, (in_h - 1) / 2], [0, 0, 1]])
  from_out_pixels = np.array(
    [[2 / out_w, 0, 1 / out_w - 1], [0, 2 / out_h, 1 / out_h - 1], [0, 0, 1]]
  )
  rows = []
  for affine in affines:
    full = to_in_pixels @ np.vstack([affine, [0, 0, 1]]) @ from_out_pixels
    rows.append(full.reshape(9)[:8] / full[2, 2])
  return np.array(rows, np.float32)


def _core_op(images, transforms, output_shape):
  """What tfa.image.transform(interpolation="bilinear", fill_mode="constant") computed, zero fill."""
  return tf.raw_ops.ImageProjectiveTransformV3(
    images=tf.convert_to_tensor(images, tf.float32),
    transforms=tf.convert_to_tensor(transforms, tf.float32),
    output_shape=tf.constant(output_shape, tf.int32),
    fill_value=tf.constant(0.0, tf.float32),
    interpolation="BILINEAR",
    fill_mode="CONSTANT",
  )


def _bilinear_np(image, x, y):
  """Reference bilinear sample of one `[H, W, C]` image at pixel (x, y), zero fill."""
  h, w = image.shape[:2]
  x0, y0 = math.floor(x), math.floor(y)
  total = np.zeros(image.shape[2])
  for xi, yi in [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]:
    weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
    value = image[yi, xi] if 0 <= xi < w and 0 <= yi < h else 0.0
    total += weight * value
  return total


class CoreOpTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(
    ("same_size", (12, 12), (12, 12)),
    ("zoom_out", (12, 12), (12, 12), (1.2, 1.8)),
    ("smaller", (12, 12), (7, 9)),
    ("larger", (12, 10), (16, 20)),
    ("tall", (12, 12), (18, 5)),
  )
  def test_warp_affine_matches_core_op(self, input_size, output_size, zoom=(0.7, 1.4)):
    images = _images((3,) + input_size + (2,), seed=1)
    affines = _random_affines(3, seed=2, zoom=zoom)
    rows = _pixel_rows(affines, input_size, output_size)
    got = warp_lib.warp_affine(images, affines.astype(np.float32), output_size=output_size)
    self.assertEqual(got.shape, (3,) + output_size + (2,))
    self.assertAllClose(got, _core_op(images, rows, output_size), atol=1e-5)

  def test_bilinear_sample_matches_numpy_reference(self):
    image = _images((1, 6, 7, 2), seed=10, dtype=np.float64)
    rng = np.random.default_rng(11)
    x = rng.uniform(-1.5, 7.5, (1, 5, 4)) + _OFFSET
    y = rng.uniform(-1.5, 6.5, (1, 5, 4)) + _OFFSET
    got = warp_lib.bilinear_sample(image, x, y).numpy()
    for i in range(5):
      for j in range(4):
        expected = _bilinear_np(image[0], x[0, i, j], y[0, i, j])
        self.assertAllClose(got[0, i, j], expected, atol=1e-12)


def _check_gradient(test, fn, value, delta=1e-6, max_coordinates=32, directions=12):
  """Compares the tape gradient of ``sum(weights * fn(value))`` with central differences.

  float64. Small inputs (transforms) are checked coordinate by coordinate; larger ones (images)
  along `directions` random Gaussian directions, which catches any wrong gradient entry almost
  surely at a fraction of the cost. `fn` runs inside a tf.function so the evaluations are cheap.
  """
  value = tf.constant(value, tf.float64)
  rng = np.random.default_rng(99)
  weights = tf.constant(rng.normal(size=fn(value).shape))
  loss = tf.function(lambda x: tf.reduce_sum(weights * fn(x)))
  with tf.GradientTape() as tape:
    tape.watch(value)
    out = loss(value)
  analytic = tape.gradient(out, value).numpy()
  if value.shape.num_elements() <= max_coordinates:
    steps = np.eye(value.shape.num_elements()).reshape((-1,) + tuple(value.shape))
  else:
    steps = rng.normal(size=(directions,) + tuple(value.shape))
  numeric = []
  for step in steps:
    plus = loss(value + delta * step).numpy()
    minus = loss(value - delta * step).numpy()
    numeric.append((plus - minus) / (2 * delta))
  expected = np.tensordot(steps, analytic, axes=analytic.ndim)
  test.assertAllClose(expected, np.array(numeric), atol=1e-6, rtol=1e-5)
  test.assertGreater(np.abs(analytic).max(), 1e-3)  # not trivially zero


class GradientTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("zeros", "zeros"), ("border", "border"))
  def test_warp_affine_gradients(self, padding):
    images = _images((2, 6, 6, 2), seed=17, dtype=np.float64)
    rng = np.random.default_rng(18)
    theta = rng.uniform(-1, 1, 2)
    # Zoom out so that some points fall outside the frame (zero fill / border clamp).
    scale = rng.uniform(1.0, 1.4, (2, 2))
    shift = rng.uniform(-0.3, 0.3, (2, 2)) + _OFFSET / 7
    affines = affine_lib.from_pose(
      tf.constant(np.stack([np.cos(theta), np.sin(theta)], -1)),
      tf.constant(scale),
      tf.constant(shift),
    ).numpy()
    _check_gradient(
      self, lambda x: warp_lib.warp_affine(x, tf.constant(affines), padding=padding), images
    )
    _check_gradient(
      self, lambda a: warp_lib.warp_affine(tf.constant(images), a, padding=padding), affines
    )


class CompilationTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("graph", False), ("xla", True))
  def test_in_tf_function_equals_eager(self, jit_compile):
    images = tf.constant(_images((2, 10, 10, 3), seed=19))
    affines = affine_lib.random_affine(2, tf.constant([1, 2]))

    def forward_and_grads(x, a):
      with tf.GradientTape() as tape:
        tape.watch([x, a])
        zeros = warp_lib.warp_affine(x, a)
        border = warp_lib.warp_affine(x, a, padding="border")
        resized = warp_lib.warp_affine(x, a, output_size=(8, 12))
        loss = tf.reduce_sum(tf.square(zeros)) + tf.reduce_sum(border) + tf.reduce_sum(resized)
      return (zeros, border, resized) + tuple(tape.gradient(loss, [x, a]))

    compiled = tf.function(forward_and_grads, jit_compile=jit_compile)
    eager = forward_and_grads(images, affines)
    graph = compiled(images, affines)
    for e, g in zip(eager, graph, strict=True):
      self.assertAllClose(g, e, atol=1e-4, rtol=1e-5)

  def test_dynamic_shapes_in_tf_function(self):
    fn = tf.function(
      warp_lib.warp_affine,
      input_signature=[
        tf.TensorSpec([None, None, None, 2], tf.float32),
        tf.TensorSpec([None, 2, 3], tf.float32),
      ],
    )
    images = _images((2, 6, 10, 2), seed=22)
    affines = affine_lib.random_affine(2, tf.constant([3, 4]))
    self.assertAllClose(fn(images, affines), warp_lib.warp_affine(images, affines), atol=1e-6)


class WarpAffineTest(tf.test.TestCase, parameterized.TestCase):
  def test_identity(self):
    images = _images((2, 8, 6, 3), seed=23)
    self.assertAllClose(warp_lib.warp_affine(images, affine_lib.identity([2])), images, atol=1e-6)

  def test_normalised_shift_moves_whole_pixels(self):
    # out(u) = in(u + (2 m / W, 0)): column j reads column j + m.
    images = _images((1, 5, 8, 2), seed=24)
    affines = np.array([[[1.0, 0.0, 2 * 3 / 8], [0.0, 1.0, 0.0]]], np.float32)
    got = warp_lib.warp_affine(images, affines).numpy()
    self.assertAllClose(got[:, :, :5], images[:, :, 3:], atol=1e-6)
    self.assertAllClose(got[:, :, 5:], np.zeros((1, 5, 3, 2)), atol=1e-6)

  def test_border_replicates_edges(self):
    images = _images((2, 6, 7, 3), seed=25)
    far_right = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 0.0]], np.float32)
    far_up = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -5.0]], np.float32)
    right = warp_lib.warp_affine(images, np.stack([far_right] * 2), padding="border").numpy()
    self.assertAllClose(right, np.repeat(images[:, :, -1:], 7, axis=2), atol=1e-6)
    up = warp_lib.warp_affine(images, np.stack([far_up] * 2), padding="border").numpy()
    self.assertAllClose(up, np.repeat(images[:, :1], 6, axis=1), atol=1e-6)
    corner = np.array([[1.0, 0.0, -9.0], [0.0, 1.0, 9.0]], np.float32)
    out = warp_lib.warp_affine(images, np.stack([corner] * 2), padding="border").numpy()
    self.assertAllClose(out, np.broadcast_to(images[:, -1:, :1], out.shape), atol=1e-6)
    # Zero padding reads nothing out there.
    zeros = warp_lib.warp_affine(images, np.stack([far_right] * 2), padding="zeros")
    self.assertAllClose(zeros, np.zeros_like(images))

  def test_border_zoom_out_equals_clamped_reference(self):
    image = _images((1, 5, 6, 1), seed=26, dtype=np.float64)
    affine = np.array([[[1.7, 0.2, 0.1], [-0.1, 1.5, -0.2]]])
    got = warp_lib.warp_affine(image, affine, padding="border").numpy()[0]
    h, w = 5, 6
    for i in range(h):
      for j in range(w):
        u = np.array([-1 + (2 * j + 1) / w, -1 + (2 * i + 1) / h])
        p = affine[0, :, :2] @ u + affine[0, :, 2]
        x = min(max(((p[0] + 1) * w - 1) / 2, 0), w - 1)
        y = min(max(((p[1] + 1) * h - 1) / 2, 0), h - 1)
        self.assertAllClose(got[i, j], _bilinear_np(image[0], x, y), atol=1e-12)

  def test_output_size(self):
    images = _images((2, 8, 8, 1), seed=27)
    out = warp_lib.warp_affine(images, affine_lib.identity([2]), output_size=(4, 4))
    # Identity onto a 2x coarser grid: output centres fall between 2x2 input pixels.
    expected = images.reshape(2, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    self.assertAllClose(out, expected, atol=1e-6)

  def test_bad_padding(self):
    with self.assertRaisesRegex(ValueError, "padding"):
      warp_lib.warp_affine(tf.zeros([1, 4, 4, 1]), affine_lib.identity([1]), padding="reflect")


if __name__ == "__main__":
  tf.test.main()
