"""Tests of copart_tf.ops.grid: the one coordinate grid (pixel centres at -1 + (2i+1)/W)."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.ops import grid as grid_lib


class PixelCentersTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(("one", 1), ("two", 2), ("odd", 5), ("even", 8), ("big", 64))
  def test_pixel_centers_formula(self, size):
    expected = np.array([-1.0 + (2 * i + 1) / size for i in range(size)])
    self.assertAllClose(grid_lib.pixel_centers(size, tf.float64), expected, atol=1e-12)

  def test_pixel_centers_span_and_symmetry(self):
    xs = grid_lib.pixel_centers(16).numpy()
    self.assertEqual(xs.dtype, np.float32)
    # Half a pixel from each edge of [-1, 1], symmetric around 0, uniform spacing 2/W.
    self.assertAllClose(xs[0], -1.0 + 1.0 / 16)
    self.assertAllClose(xs[-1], 1.0 - 1.0 / 16)
    self.assertAllClose(xs, -xs[::-1])
    self.assertAllClose(np.diff(xs), np.full(15, 2.0 / 16))

  @parameterized.named_parameters(("square", 4, 4), ("wide", 3, 5), ("tall", 6, 2))
  def test_make_grid_layout(self, height, width):
    grid = grid_lib.make_grid(height, width, tf.float64).numpy()
    self.assertEqual(grid.shape, (height, width, 2))
    for i in range(height):
      for j in range(width):
        self.assertAllClose(grid[i, j], [-1 + (2 * j + 1) / width, -1 + (2 * i + 1) / height])

  @parameterized.named_parameters(("square", 4, 4), ("wide", 3, 5), ("tall", 6, 2))
  def test_numpy_twin_matches(self, height, width):
    self.assertAllClose(
      grid_lib.make_grid_np(height, width), grid_lib.make_grid(height, width), atol=1e-7
    )
    self.assertEqual(grid_lib.make_grid_np(height, width).dtype, np.float32)


class ConversionTest(tf.test.TestCase, parameterized.TestCase):
  def test_pixel_centres_map_to_indices(self):
    height, width = 6, 10
    grid = grid_lib.make_grid(height, width, tf.float64)
    pixels = grid_lib.normalized_to_pixels(grid, height, width).numpy()
    jj, ii = np.meshgrid(np.arange(width), np.arange(height))
    self.assertAllClose(pixels[..., 0], jj, atol=1e-9)
    self.assertAllClose(pixels[..., 1], ii, atol=1e-9)

  def test_known_points(self):
    # Image edges are -1 / 1, i.e. pixel -0.5 and W - 0.5; the centre 0 is pixel (W - 1) / 2.
    points = np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    pixels = grid_lib.normalized_to_pixels(points, 4, 8)
    self.assertAllClose(pixels, [[-0.5, -0.5], [7.5, 3.5], [3.5, 1.5]])

  @parameterized.named_parameters(("numpy", False), ("tensor", True))
  def test_round_trip(self, as_tensor):
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.5, 1.5, size=(7, 2)).astype(np.float32)
    height, width = 12, 20
    value = tf.constant(points) if as_tensor else points
    pixels = grid_lib.normalized_to_pixels(value, height, width)
    back = grid_lib.pixels_to_normalized(pixels, height, width)
    self.assertEqual(isinstance(back, np.ndarray), not as_tensor)
    self.assertAllClose(back, points, atol=1e-6)
    pixel_points = rng.uniform(-2, 25, size=(7, 2)).astype(np.float32)
    value = tf.constant(pixel_points) if as_tensor else pixel_points
    self.assertAllClose(
      grid_lib.normalized_to_pixels(
        grid_lib.pixels_to_normalized(value, height, width), height, width
      ),
      pixel_points,
      atol=1e-5,
    )


if __name__ == "__main__":
  tf.test.main()
