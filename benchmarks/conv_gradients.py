"""Conv gradients: the stock TensorFlow ops vs copart_tf.ops.conv, on the paper preset's shapes.

For each shape it times (median of `--steps` calls in a tf.function, after warm-up) the forward
conv and the forward + backward (gradients w.r.t. input and kernel) of:
- `stock`: `tf.nn.conv2d` with TensorFlow's registered gradient (oneDNN's backward-filter kernel);
- `ours`: `copart_tf.ops.conv.conv2d` as the model calls it (Winograd F(2x2, 3x3) or the filter
  gradient as per-tap matmuls, whichever the shape qualifies for);
and for the decoder's upsample + conv: `tf.repeat` nearest x2 then the stock conv, vs
`copart_tf.ops.conv.upsample_conv2d`. Prints one JSON object (times in ms, GFLOP/s of the
stock-equivalent FLOPs).

  python benchmarks/conv_gradients.py            # the default shapes, ~1-2 min on 2 cores
  python benchmarks/conv_gradients.py --steps=5
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# (name, batch, height, width, c_in, c_out, stride, upsample): paper preset, batch 1.
SHAPES = (
  ("encoder up_0_0 (3 images, concat 1024+512 -> 512 at 32x32)", 3, 32, 32, 1536, 512, 1, False),
  ("encoder down_0_1 (1024 -> 1024 at 16x16)", 3, 16, 16, 1024, 1024, 1, False),
  ("encoder stem_2 (256 -> 512, stride 2, 64x64 -> 32x32)", 3, 64, 64, 256, 512, 2, False),
  ("decoder conv_1 (31 maps, up x2 32 -> 64, 256 -> 128)", 31, 32, 32, 256, 128, 1, True),
  ("decoder conv_2 (31 maps, up x2 64 -> 128, 128 -> 64)", 31, 64, 64, 128, 64, 1, True),
)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3, help="Timed calls per measurement.")
  parser.add_argument("--warmup", type=int, default=1, help="Untimed calls first.")
  args = parser.parse_args(argv)

  import tensorflow as tf

  import copart_tf  # noqa: F401  (environment defaults before TensorFlow loads)
  from copart_tf.benchmarking import machine, stats
  from copart_tf.ops import conv as conv_lib

  def stock(x, kernel, stride, upsample):
    if upsample:
      x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
    return tf.nn.conv2d(x, kernel, stride, "SAME")

  def ours(x, kernel, stride, upsample):
    if upsample:
      return conv_lib.upsample_conv2d(x, kernel)
    return conv_lib.conv2d(x, kernel, strides=stride)

  rows = []
  for name, n, h, w, c_in, c_out, stride, upsample in SHAPES:
    x = tf.random.stateless_normal([n, h, w, c_in], [0, 1])
    kernel = tf.random.stateless_normal([3, 3, c_in, c_out], [0, 2]) * 0.01
    out_h, out_w = (2 * h, 2 * w) if upsample else (-(-h // stride), -(-w // stride))
    flops = 2.0 * n * out_h * out_w * 9 * c_in * c_out  # the stock (upsampled) conv's FLOPs
    row = {"shape": name, "forward_gflop": round(flops / 1e9, 2)}
    for label, fn in (("stock", stock), ("ours", ours)):

      def forward(fn=fn, x=x, kernel=kernel, stride=stride, upsample=upsample):
        return tf.reduce_sum(fn(x, kernel, stride, upsample))

      def forward_backward(fn=fn, x=x, kernel=kernel, stride=stride, upsample=upsample):
        with tf.GradientTape() as tape:
          tape.watch([x, kernel])
          loss = tf.reduce_sum(tf.square(fn(x, kernel, stride, upsample)))
        return [tf.reduce_sum(g) for g in tape.gradient(loss, [x, kernel])]

      forward_fn, both_fn = tf.function(forward), tf.function(forward_backward)
      fwd = stats.time_calls(lambda f=forward_fn: f().numpy(), args.steps, args.warmup)
      both = stats.time_calls(lambda f=both_fn: [g.numpy() for g in f()], args.steps, args.warmup)
      row[label] = {
        "forward_ms": fwd["median"],
        "forward_backward_ms": both["median"],
        "forward_backward_gflops": round(3 * flops / both["median"] / 1e6, 1),
      }
    row["forward_backward_speedup"] = round(
      row["stock"]["forward_backward_ms"] / row["ours"]["forward_backward_ms"], 2
    )
    print(json.dumps(row), file=sys.stderr)
    rows.append(row)
  facts = machine.machine_facts()
  result = {
    "shapes": rows,
    **{key: facts[key] for key in ("cpu_model", "usable_cores", "tensorflow", "date")},
    "load_average_1m": machine.load_average_1m(),
  }
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
