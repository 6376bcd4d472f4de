"""One optimizer update over a preset's trainable variables: Keras' Adam vs FusedAdam.

Builds `CoPartModel(preset=--preset)`, makes random gradients, and times (median of `--steps`
calls in a tf.function, after warm-up) `optimizer.apply(gradients, variables)` for
`keras.optimizers.Adam` and `copart_tf.training.fused_adam.FusedAdam`. Prints one JSON object.

  python benchmarks/optimizer_update.py                  # paper preset (127M parameters)
  python benchmarks/optimizer_update.py --preset=small
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="paper", help="Model preset (paper, small, tiny).")
  parser.add_argument("--steps", type=int, default=5, help="Timed calls per optimizer.")
  parser.add_argument("--warmup", type=int, default=2, help="Untimed calls first.")
  args = parser.parse_args(argv)

  import keras
  import tensorflow as tf

  import copart_tf  # noqa: F401  (environment defaults before TensorFlow loads)
  from copart_tf.benchmarking import machine, stats
  from copart_tf.model.copart_model import CoPartModel
  from copart_tf.training.fused_adam import FusedAdam

  result = {"preset": args.preset}
  for label, optimizer_class in (("keras_adam", keras.optimizers.Adam), ("fused_adam", FusedAdam)):
    keras.utils.set_random_seed(0)
    model = CoPartModel(num_parts=10, preset=args.preset, image_size=128)
    model.build()
    variables = model.trainable_variables
    gradients = [tf.random.stateless_normal(v.shape, [0, i]) for i, v in enumerate(variables)]
    optimizer = optimizer_class(learning_rate=1e-4)
    optimizer.build(variables)
    apply = tf.function(
      lambda opt=optimizer, grads=gradients, weights=variables: opt.apply(grads, weights)
    )

    def call(apply=apply, optimizer=optimizer):
      apply()
      return int(optimizer.iterations.numpy())  # blocks until the update is done

    result["parameters"] = int(sum(v.numpy().size for v in variables))
    result[label] = {"update_ms": stats.time_calls(call, args.steps, args.warmup)}
    print(f"{label}: {result[label]['update_ms']['median']} ms", file=sys.stderr)
  result["speedup"] = round(
    result["keras_adam"]["update_ms"]["median"] / result["fused_adam"]["update_ms"]["median"], 2
  )
  facts = machine.machine_facts()
  result.update({key: facts[key] for key in ("cpu_model", "usable_cores", "tensorflow", "date")})
  result["load_average_1m"] = machine.load_average_1m()
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
