"""The machine's dense float32 matmul rate with TensorFlow: the denominator of "utilisation"."""

import tensorflow as tf

from benchmarks.perf import stats


def matmul_gflops(size=2048, steps=10, warmup=2, dtype="float32"):
  """Times ``A @ B`` for random `size` x `size` matrices inside a tf.function.

  One call is ``2 size^3`` FLOPs; the result is reduced to a scalar inside the function so the
  timing does not include copying the product out.

  Args:
    size: matrix side.
    steps: timed calls.
    warmup: untimed calls first.
    dtype: "float32" (the reference) or another float dtype name.

  Returns:
    dict: size, dtype, flops_per_call, time_ms (summary), gflops (at the median time),
    gflops_best (at the fastest call).
  """
  a = tf.random.stateless_normal([size, size], seed=[1, 2], dtype=dtype)
  b = tf.random.stateless_normal([size, size], seed=[3, 4], dtype=dtype)

  @tf.function
  def product(x, y):
    return tf.reduce_sum(tf.matmul(x, y))

  timing = stats.time_calls(lambda: product(a, b).numpy(), steps, warmup)
  flops = 2.0 * size**3
  timing.pop("samples_ms")
  return {
    "size": size,
    "dtype": dtype,
    "flops_per_call": int(flops),
    "time_ms": timing,
    "gflops": round(flops / (timing["median"] / 1000.0) / 1e9, 2),
    "gflops_best": round(flops / (timing["min"] / 1000.0) / 1e9, 2),
  }
