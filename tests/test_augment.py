"""Tests of copart_tf.data.augment: every op eagerly and inside tf.data (big_vision style)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from copart_tf.data import augment


def _in_tf_data(fn, *args):
  """Runs `fn(*args)` inside a tf.data map (graph mode) and returns NumPy outputs."""
  ds = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
  return tf.nest.map_structure(lambda x: x.numpy(), next(iter(ds)))


def _eager(fn, *args):
  return tf.nest.map_structure(lambda x: x.numpy(), fn(*args))


def _random_image(size, seed=0, channels=3):
  return np.random.default_rng(seed).random((size, size, channels)).astype(np.float32)


@pytest.mark.parametrize("run", [_eager, _in_tf_data], ids=["eager", "tf_data"])
def test_resize_downscale_is_area_average(run):
  # A 2x2 checkerboard: nearest would give 0 or 1, area gives exactly 0.5.
  checker = np.indices((16, 16)).sum(axis=0) % 2
  image = np.repeat(checker[:, :, None], 3, axis=2).astype(np.float32)
  out = run(lambda x: augment.resize_image(x, 8), image)
  assert out.shape == (8, 8, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, 0.5, atol=1e-6)


@pytest.mark.parametrize("run", [_eager, _in_tf_data], ids=["eager", "tf_data"])
def test_resize_upscale_and_identity(run):
  image = _random_image(6)
  up = run(lambda x: augment.resize_image(x, 12), image)
  assert up.shape == (12, 12, 3)
  assert up.min() >= 0.0 and up.max() <= 1.0
  # Bilinear, not nearest: upscaled values include interpolated ones.
  assert len(np.unique(up[..., 0])) > len(np.unique(image[..., 0]))
  same = run(lambda x: augment.resize_image(x, 6), image)
  np.testing.assert_array_equal(same, image)


@pytest.mark.parametrize("run", [_eager, _in_tf_data], ids=["eager", "tf_data"])
def test_resize_uint8_and_non_square(run):
  image = (np.arange(10 * 20 * 3) % 256).astype(np.uint8).reshape(10, 20, 3)
  out = run(lambda x: augment.resize_image(x, 8), image)
  assert out.shape == (8, 8, 3) and out.dtype == np.float32
  assert 0.0 <= out.min() and out.max() <= 1.0


def test_resize_eager_equals_tf_data():
  image = _random_image(20, seed=3)
  np.testing.assert_array_equal(
    _eager(lambda x: augment.resize_image(x, 7), image),
    _in_tf_data(lambda x: augment.resize_image(x, 7), image),
  )


def test_rotation_zero_is_identity_and_quarter_turn_is_rot90():
  images = np.stack([_random_image(9, seed=1), _random_image(9, seed=2)])
  zero = augment.rotate_images(images, tf.constant(0.0)).numpy()
  np.testing.assert_allclose(zero, images, atol=1e-6)
  quarter = augment.rotate_images(images, tf.constant(math.pi / 2)).numpy()
  # A positive angle turns the content counter-clockwise on screen (as np.rot90 with k=1).
  expected = np.stack([np.rot90(im, k=1, axes=(0, 1)) for im in images])
  np.testing.assert_allclose(quarter, expected, atol=1e-5)


def test_color_jitter_neutral_is_identity():
  images = _random_image(8)[None]
  out = augment.color_jitter(images, 1.0, 1.0, 1.0, 0.0).numpy()
  np.testing.assert_allclose(out, images, atol=1e-5)


SEED = np.array([7, 11], np.int64)


@pytest.mark.parametrize("run", [_eager, _in_tf_data], ids=["eager", "tf_data"])
def test_augment_pair_shapes_range_determinism(run):
  source, target = _random_image(16, 1), _random_image(16, 2)
  out1 = run(augment.augment_pair, source, target, SEED)
  out2 = run(augment.augment_pair, source, target, SEED)
  for x in out1:
    assert x.shape == (16, 16, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
  np.testing.assert_array_equal(out1[0], out2[0])
  np.testing.assert_array_equal(out1[1], out2[1])
  other = run(augment.augment_pair, source, target, SEED + 1)
  assert not np.allclose(other[0], out1[0]) or not np.allclose(other[1], out1[1])


def test_augment_pair_eager_equals_tf_data():
  source, target = _random_image(16, 1), _random_image(16, 2)
  eager = _eager(augment.augment_pair, source, target, SEED)
  graph = _in_tf_data(augment.augment_pair, source, target, SEED)
  np.testing.assert_allclose(eager[0], graph[0], atol=1e-6)
  np.testing.assert_allclose(eager[1], graph[1], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_augment_pair_applies_one_draw_to_both_frames(seed):
  """aug(s, t) equals (aug(s, s)[0], aug(t, t)[0]) up to the shared time flip."""
  s, t = _random_image(12, 10), _random_image(12, 20)
  seed = np.array([seed, 3], np.int64)
  out_s, out_t = (x.numpy() for x in augment.augment_pair(s, t, seed))
  ss = augment.augment_pair(s, s, seed)[0].numpy()
  tt = augment.augment_pair(t, t, seed)[0].numpy()
  same_order = np.allclose(out_s, ss, atol=1e-6) and np.allclose(out_t, tt, atol=1e-6)
  swapped = np.allclose(out_s, tt, atol=1e-6) and np.allclose(out_t, ss, atol=1e-6)
  assert same_order or swapped
  # Identical frames stay identical.
  a, b = augment.augment_pair(s, s, seed)
  np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_time_flip_probability_and_disabling():
  s, t = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
  flips = 0
  for i in range(200):
    out_s, _ = augment.augment_pair(s, t, np.array([i, 0], np.int64), rotation_degrees=0, jitter=0)
    flips += int(out_s.numpy().mean() > 0.5)
  assert 70 < flips < 130
  out_s, out_t = augment.augment_pair(s, t, SEED, rotation_degrees=0, jitter=0, time_flip_prob=0)
  np.testing.assert_array_equal(out_s.numpy(), s)
  np.testing.assert_array_equal(out_t.numpy(), t)
