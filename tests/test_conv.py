"""copart_tf.ops.conv: same values and gradients as the stock ops, eager, traced and under XLA."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.ops import conv as conv_lib


def _nearest_upsample(x):
  return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def _random_conv_inputs(seed, height, width, c_in, c_out, kernel=3):
  """Input `[2, H, W, C_in]`, kernel `[k, k, C_in, C_out]` and bias `[C_out]`, float32."""
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.normal(size=(2, height, width, c_in)), tf.float32)
  w = tf.constant(rng.normal(size=(kernel, kernel, c_in, c_out)), tf.float32)
  b = tf.constant(rng.normal(size=(c_out,)), tf.float32)
  return x, w, b


def _values_and_gradients(fn, x, kernel, bias):
  with tf.GradientTape() as tape:
    tape.watch([x, kernel, bias])
    y = fn(x, kernel, bias)
    # A non-uniform cotangent, so a wrong tap or phase cannot cancel out.
    weights = tf.reshape(tf.sin(tf.cast(tf.range(tf.size(y)), y.dtype)), tf.shape(y))
    loss = tf.reduce_sum(y * weights)
  return [y] + tape.gradient(loss, [x, kernel, bias])


class Conv2dTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.parameters(
    # (height, width, c_in, c_out, kernel, stride, padding)
    (9, 9, 5, 3, 3, 1, "SAME"),  # C_out < C_in: output-gradient windows
    (9, 9, 3, 5, 3, 1, "SAME"),  # C_out > C_in: input windows
    (8, 8, 4, 6, 3, 2, "SAME"),  # even size, stride 2: TF pads only after
    (9, 7, 4, 6, 3, 2, "SAME"),  # odd size, stride 2
    (8, 8, 6, 4, 2, 1, "VALID"),
    (7, 6, 6, 4, 3, 1, "VALID"),
    (6, 7, 4, 6, 2, 1, "SAME"),  # even kernel: asymmetric SAME padding
  )
  def test_matches_tf_nn_conv2d(self, height, width, c_in, c_out, kernel, stride, padding):
    x, w, b = _random_conv_inputs(0, height, width, c_in, c_out, kernel)

    def reference(x, w, b):
      return tf.nn.bias_add(tf.nn.conv2d(x, w, stride, padding), b)

    def ours(x, w, b):
      # Forced: "auto" keeps the stock gradient for channel counts this small.
      return conv_lib.conv2d(x, w, b, strides=stride, padding=padding, filter_gradient="matmul")

    def auto(x, w, b):
      return conv_lib.conv2d(x, w, b, strides=stride, padding=padding)

    expected = _values_and_gradients(reference, x, w, b)
    for fn in (ours, tf.function(ours), tf.function(ours, jit_compile=True), auto):
      for got, want in zip(_values_and_gradients(fn, x, w, b), expected, strict=True):
        self.assertAllClose(got, want, rtol=1e-4, atol=1e-4)

  def test_dynamic_spatial_shape(self):
    rng = np.random.default_rng(1)
    w = tf.constant(rng.normal(size=(3, 3, 4, 2)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 4])])
    def kernel_gradient(x):
      with tf.GradientTape() as tape:
        tape.watch(w)
        loss = tf.reduce_sum(conv_lib.conv2d(x, w, strides=2, filter_gradient="matmul") ** 2)
      return tape.gradient(loss, w)

    x = tf.constant(rng.normal(size=(1, 7, 6, 4)), tf.float32)
    with tf.GradientTape() as tape:
      tape.watch(w)
      loss = tf.reduce_sum(tf.nn.conv2d(x, w, 2, "SAME") ** 2)
    self.assertAllClose(kernel_gradient(x), tape.gradient(loss, w), rtol=1e-4, atol=1e-4)

  def test_rejects_bad_arguments(self):
    x = tf.zeros([1, 4, 4, 2])
    with self.assertRaisesRegex(ValueError, "padding"):
      conv_lib.conv2d(x, tf.zeros([3, 3, 2, 2]), padding="same")
    with self.assertRaisesRegex(ValueError, "filter_gradient"):
      conv_lib.conv2d(x, tf.zeros([3, 3, 2, 2]), filter_gradient="fast")
    with self.assertRaisesRegex(ValueError, "3x3"):
      conv_lib.upsample_conv2d(x, tf.zeros([2, 2, 2, 2]))

  def test_matmul_gradient_only_for_wide_convs(self):
    self.assertFalse(conv_lib.matmul_gradient_pays(3, 64, 1))  # thin input
    self.assertFalse(conv_lib.matmul_gradient_pays(10, 256, 1))
    self.assertTrue(conv_lib.matmul_gradient_pays(64, 64, 1))
    self.assertTrue(conv_lib.matmul_gradient_pays(1536, 512, 1))
    self.assertFalse(conv_lib.matmul_gradient_pays(64, 256, 2))  # strided copies of the input
    self.assertTrue(conv_lib.matmul_gradient_pays(256, 512, 2))


class WinogradTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.parameters((4, 4, 3, 2), (8, 6, 5, 7), (2, 10, 4, 4))
  def test_matches_tf_nn_conv2d(self, height, width, c_in, c_out):
    x, w, b = _random_conv_inputs(3, height, width, c_in, c_out)

    def reference(x, w, b):
      return tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)

    expected = _values_and_gradients(reference, x, w, b)
    fn = conv_lib.winograd_conv2d
    for variant in (fn, tf.function(fn), tf.function(fn, jit_compile=True)):
      for got, want in zip(_values_and_gradients(variant, x, w, b), expected, strict=True):
        self.assertAllClose(got, want, rtol=1e-4, atol=1e-4)

  def test_bfloat16(self):
    # Mixed precision runs the convs in bfloat16: the transforms must keep the input's dtype.
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(1, 6, 6, 8)), tf.float32)
    w = tf.constant(rng.normal(size=(3, 3, 8, 4)), tf.float32)
    got = conv_lib.winograd_conv2d(tf.cast(x, tf.bfloat16), tf.cast(w, tf.bfloat16))
    self.assertEqual(got.dtype, tf.bfloat16)
    want = tf.nn.conv2d(x, w, 1, "SAME")
    self.assertAllClose(tf.cast(got, tf.float32), want, rtol=0.05, atol=0.3)

  def test_conv2d_uses_it_only_where_it_pays(self):
    self.assertTrue(conv_lib.winograd_pays(32, 32, 1536, 512))
    self.assertFalse(conv_lib.winograd_pays(16, 16, 2048, 1024))  # small map, batch unknown
    self.assertFalse(conv_lib.winograd_pays(16, 16, 2048, 1024, batch=1))  # too few tiles
    self.assertTrue(conv_lib.winograd_pays(16, 16, 2048, 1024, batch=3))
    self.assertFalse(conv_lib.winograd_pays(8, 8, 2048, 1024, batch=12))
    self.assertFalse(conv_lib.winograd_pays(32, 32, 64, 64))  # thin
    self.assertFalse(conv_lib.winograd_pays(33, 32, 512, 512))  # odd size
    self.assertFalse(conv_lib.winograd_pays(None, 32, 512, 512))  # unknown size


class UpsampleConv2dTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.parameters((5, 5, 3, 4), (4, 6, 4, 2), (1, 1, 2, 3))
  def test_equals_upsample_then_conv(self, height, width, c_in, c_out):
    x, w, b = _random_conv_inputs(2, height, width, c_in, c_out)

    def reference(x, w, b):
      return tf.nn.bias_add(tf.nn.conv2d(_nearest_upsample(x), w, 1, "SAME"), b)

    expected = _values_and_gradients(reference, x, w, b)
    self.assertEqual(expected[0].shape, (2, 2 * height, 2 * width, c_out))

    def fn(x, w, b):
      return conv_lib.upsample_conv2d(x, w, b, filter_gradient="matmul")

    for variant in (
      fn,
      tf.function(fn),
      tf.function(fn, jit_compile=True),
      conv_lib.upsample_conv2d,
    ):
      for got, want in zip(_values_and_gradients(variant, x, w, b), expected, strict=True):
        self.assertAllClose(got, want, rtol=1e-4, atol=1e-4)

  def test_phase_kernels_cover_every_tap(self):
    # Each 3x3 tap lands in exactly 4 (phase, tap) slots: once per row phase x column phase.
    kernel = tf.reshape(tf.range(9, dtype=tf.float32), [3, 3, 1, 1])
    total = sum(tf.reduce_sum(k) for k in conv_lib.upsample_kernels(kernel))
    self.assertAllClose(total, 4 * tf.reduce_sum(kernel))


if __name__ == "__main__":
  tf.test.main()
