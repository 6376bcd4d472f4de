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


def _pixel_rows(n, seed=0, projective=False, size=12):
  """`[n, 8]` output->input pixel transforms: rotation/scale about the centre, shift, perspective."""
  rng = np.random.default_rng(seed)
  rows = []
  centre = (size - 1) / 2.0
  for _ in range(n):
    theta = rng.uniform(-0.6, 0.6)
    scale = rng.uniform(0.7, 1.4)
    a = scale * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    shift = rng.uniform(-3, 3, size=2) + _OFFSET
    t = centre - a @ [centre, centre] + shift
    c = rng.uniform(-0.01, 0.01, size=2) if projective else np.zeros(2)
    rows.append([a[0, 0], a[0, 1], t[0], a[1, 0], a[1, 1], t[1], c[0], c[1]])
  return np.array(rows)


def _core_op(images, transforms, fill_value=0.0, output_shape=None):
  """What tfa.image.transform(interpolation="bilinear", fill_mode="constant") computed."""
  images = tf.convert_to_tensor(images, tf.float32)
  rank3 = images.shape.rank == 3
  if rank3:
    images = images[None]
  transforms = tf.convert_to_tensor(transforms, tf.float32)
  if transforms.shape.rank == 1:
    transforms = transforms[None]
  if output_shape is None:
    output_shape = images.shape[1:3]
  out = tf.raw_ops.ImageProjectiveTransformV3(
    images=images,
    transforms=transforms,
    output_shape=tf.constant(output_shape, tf.int32),
    fill_value=tf.constant(fill_value, tf.float32),
    interpolation="BILINEAR",
    fill_mode="CONSTANT",
  )
  return out[0] if rank3 else out


def _bilinear_np(image, x, y, fill=0.0):
  """Reference bilinear sample of one `[H, W, C]` image at pixel (x, y), constant fill."""
  h, w = image.shape[:2]
  x0, y0 = math.floor(x), math.floor(y)
  total = np.zeros(image.shape[2])
  for xi, yi in [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]:
    weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
    value = image[yi, xi] if 0 <= xi < w and 0 <= yi < h else fill
    total += weight * value
  return total


class TransformForwardTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(
    ("affine_zero_fill", False, 0.0),
    ("affine_fill_one", False, 1.0),
    ("affine_fill_negative", False, -0.37),
    ("projective_zero_fill", True, 0.0),
    ("projective_fill_half", True, 0.5),
  )
  def test_matches_core_op(self, projective, fill_value):
    images = _images((3, 12, 12, 2), seed=1)
    rows = _pixel_rows(3, seed=2, projective=projective).astype(np.float32)
    expected = _core_op(images, rows, fill_value)
    got = warp_lib.transform(images, rows, fill_value=fill_value)
    self.assertEqual(got.shape, (3, 12, 12, 2))
    self.assertAllClose(got, expected, atol=1e-5)

  @parameterized.named_parameters(("smaller", (7, 9)), ("larger", (16, 20)), ("tall", (18, 5)))
  def test_output_shape(self, output_shape):
    images = _images((2, 12, 12, 3), seed=3)
    rows = _pixel_rows(2, seed=4, projective=True).astype(np.float32)
    got = warp_lib.transform(images, rows, fill_value=0.25, output_shape=output_shape)
    self.assertEqual(got.shape, (2,) + output_shape + (3,))
    self.assertAllClose(got, _core_op(images, rows, 0.25, output_shape=output_shape), atol=1e-5)

  def test_single_transform_broadcasts(self):
    images = _images((4, 12, 12, 1), seed=5)
    row = _pixel_rows(1, seed=6)[0].astype(np.float32)
    got = warp_lib.transform(images, row)
    self.assertAllClose(got, _core_op(images, row), atol=1e-5)
    self.assertAllClose(got, warp_lib.transform(images, np.tile(row[None], [4, 1])), atol=1e-7)

  def test_rank3_input(self):
    image = _images((12, 12, 3), seed=7)
    row = _pixel_rows(1, seed=8, projective=True)[0].astype(np.float32)
    got = warp_lib.transform(image, row, fill_value=0.7, output_shape=(10, 11))
    self.assertEqual(got.shape, (10, 11, 3))
    self.assertAllClose(got, _core_op(image, row, 0.7, output_shape=(10, 11)), atol=1e-5)

  def test_identity_and_integer_shift(self):
    images = _images((2, 8, 8, 3), seed=9)
    identity = np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32)
    self.assertAllClose(warp_lib.transform(images, identity), images, atol=1e-7)
    # Output (x, y) reads input (x + 2, y - 1): columns shift left by 2, rows down by 1.
    shift = np.array([1, 0, 2, 0, 1, -1, 0, 0], np.float32)
    got = warp_lib.transform(images, shift, fill_value=9.0).numpy()
    self.assertAllClose(got[:, 1:, :6], images[:, :-1, 2:])
    self.assertAllClose(got[:, 0], np.full((2, 8, 3), 9.0))
    self.assertAllClose(got[:, :, 6:], np.full((2, 8, 2, 3), 9.0))

  def test_matches_numpy_reference(self):
    image = _images((6, 7, 2), seed=10, dtype=np.float64)
    row = _pixel_rows(1, seed=11, projective=True, size=7)[0]
    got = warp_lib.transform(image, row, fill_value=0.3).numpy()
    for y in range(6):
      for x in range(7):
        k = row[6] * x + row[7] * y + 1
        xi = (row[0] * x + row[1] * y + row[2]) / k
        yi = (row[3] * x + row[4] * y + row[5]) / k
        self.assertAllClose(got[y, x], _bilinear_np(image, xi, yi, 0.3), atol=1e-12)


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


class TransformGradientTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("affine", False), ("projective", True))
  def test_gradient_wrt_images(self, projective):
    images = _images((2, 6, 6, 2), seed=12, dtype=np.float64)
    rows = tf.constant(_pixel_rows(2, seed=13, projective=projective, size=6))
    _check_gradient(self, lambda x: warp_lib.transform(x, rows, fill_value=0.3), images)

  @parameterized.named_parameters(("affine", False), ("projective", True))
  def test_gradient_wrt_transforms(self, projective):
    images = tf.constant(_images((2, 6, 6, 2), seed=14, dtype=np.float64))
    rows = _pixel_rows(2, seed=15, projective=projective, size=6)
    _check_gradient(self, lambda t: warp_lib.transform(images, t, fill_value=0.3), rows)

  def test_gradient_wrt_transform_near_border(self):
    # Points crossing the border fade into the fill value: the gradient sees that ramp too.
    images = tf.constant(_images((1, 5, 5, 1), seed=16, dtype=np.float64))
    row = np.array([[1.1, 0.05, 2.3 + _OFFSET, -0.04, 0.9, -1.7 + _OFFSET, 0.0, 0.0]])
    _check_gradient(self, lambda t: warp_lib.transform(images, t, fill_value=0.8), row)

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

  def test_zero_fill_fast_path_is_bit_identical(self):
    # A Python 0 fill masks the weights instead of the values (the training step's path); a
    # tensor fill takes the general path. Same bits forward and backward: the learning tests'
    # trajectories depend on the last bit (copart_model.py, the matting's median colour).
    images = tf.constant(_images((3, 9, 11, 4), seed=23) - 0.5)
    rng = np.random.default_rng(24)
    x = tf.constant(rng.uniform(-3, 13, (3, 7, 8)).astype(np.float32))
    y = tf.constant(rng.uniform(-3, 11, (3, 7, 8)).astype(np.float32))

    def forward_and_grads(fill):
      with tf.GradientTape() as tape:
        tape.watch([images, x, y])
        out = warp_lib.bilinear_sample(images, x, y, fill)
        loss = tf.reduce_sum(out * tf.sin(3.0 * out))
      return [out] + tape.gradient(loss, [images, x, y])

    fast, general = forward_and_grads(0.0), forward_and_grads(tf.constant(0.0))
    for a, b in zip(fast, general, strict=True):
      self.assertTrue(np.array_equal(a.numpy(), b.numpy()))


class CompilationTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("graph", False), ("xla", True))
  def test_in_tf_function_equals_eager(self, jit_compile):
    images = tf.constant(_images((2, 10, 10, 3), seed=19))
    rows = tf.constant(_pixel_rows(2, seed=20, projective=True, size=10).astype(np.float32))
    affines = affine_lib.random_affine(2, tf.constant([1, 2]))

    def forward_and_grads(x, t, a):
      with tf.GradientTape() as tape:
        tape.watch([x, t, a])
        projective = warp_lib.transform(x, t, fill_value=0.2, output_shape=(8, 12))
        zeros = warp_lib.warp_affine(x, a)
        border = warp_lib.warp_affine(x, a, padding="border")
        loss = (
          tf.reduce_sum(tf.square(projective))
          + tf.reduce_sum(tf.square(zeros))
          + tf.reduce_sum(border)
        )
      return (projective, zeros, border) + tuple(tape.gradient(loss, [x, t, a]))

    compiled = tf.function(forward_and_grads, jit_compile=jit_compile)
    eager = forward_and_grads(images, rows, affines)
    graph = compiled(images, rows, affines)
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
