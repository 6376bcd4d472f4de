"""Times one training step of a config, as the trainer builds and runs it; prints one JSON line.

  python benchmarks/train_step.py --flagfile=configs/demo.cfg            # small preset, batch 4
  python benchmarks/train_step.py --flagfile=configs/taichi.cfg --steps=3 --warmup=1  # paper, 8

Any `copart_tf.train` flag is accepted (the flagfile's, then overrides). The model and its Adam
come from `copart_tf.training.trainer.build_model` (default strategy); the step is
`CoPartModel.train_step` in a `tf.function`, fed one fixed batch of random images, so the input
pipeline is not timed. `step_ms`: median, p10, p90, min, max of `--steps` steps after `--warmup`
untimed ones (tracing), as every benchmark here (`benchmarks/perf/stats.time_calls`).
For a before/after comparison run the script against both trees, alternating, as whole processes
(README, "Training speed"); no dataset is needed.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from copart_tf import cli_env  # noqa: E402, F401 (TensorFlow's environment, before TF loads)

# isort: split
from absl import app, flags  # noqa: E402

from copart_tf import train as train_cli  # noqa: E402 (defines the training flags)

STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing).")


def main(argv):
  del argv
  import keras
  import tensorflow as tf

  from benchmarks.perf import harness, stats
  from copart_tf.training import trainer

  config = train_cli.config_from_flags()
  keras.utils.set_random_seed(config.seed)
  model, _, perceptual = trainer.build_model(config, tf.distribute.get_strategy())
  batch = harness.synthetic_batch(config, config.batch_size)  # reads image_size and seed
  step = tf.function(model.train_step, jit_compile=config.jit_compile)
  timing = stats.time_calls(lambda: float(step(batch)["total"]), STEPS.value, WARMUP.value)
  timing.pop("samples_ms")
  result = {
    "preset": config.preset,
    "batch": config.batch_size,
    "image_size": config.image_size,
    "perceptual": perceptual,
    "step_ms": timing,  # float() above waits for each step
  }
  print(json.dumps(result), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
