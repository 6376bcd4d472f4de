"""Times one training step of a config, as the trainer builds and runs it; prints one JSON line.

  python benchmarks/train_step.py --flagfile=configs/demo.cfg            # small preset, batch 4
  python benchmarks/train_step.py --flagfile=configs/taichi.cfg --steps=3 --warmup=1  # paper, 8

Any `copart_tf.train` flag is accepted (the flagfile's, then overrides). The model and its Adam
come from `copart_tf.training.trainer.build_model` (default strategy); the step is
`CoPartModel.train_step` in a `tf.function`, fed one fixed batch of random images, so the input
pipeline is not timed. The median of `--steps` steps after `--warmup` untimed ones (tracing).
For a before/after comparison run the script against both trees, alternating, as whole processes
(README, "Training speed"); no dataset is needed.
"""

import json
import sys
import time

import numpy as np
from absl import app, flags

from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
from copart_tf import train as train_cli  # defines the training flags

STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing).")


def main(argv):
  del argv
  import keras
  import tensorflow as tf

  from copart_tf.ops import affine as affine_lib
  from copart_tf.training import trainer

  config = train_cli.config_from_flags()
  keras.utils.set_random_seed(config.seed)
  model, _, perceptual = trainer.build_model(config, tf.distribute.get_strategy())
  b, s = config.batch_size, config.image_size
  rng = np.random.default_rng(config.seed)
  batch = {
    "source": tf.constant(rng.random((b, s, s, 3), dtype=np.float32)),
    "target": tf.constant(rng.random((b, s, s, 3), dtype=np.float32)),
    "warp_affines": affine_lib.random_affine(b, tf.constant([config.seed, 1], tf.int32)),
  }
  step = tf.function(model.train_step, jit_compile=config.jit_compile)
  start = time.perf_counter()
  for _ in range(WARMUP.value):
    float(step(batch)["total"])  # float() waits for the step
  warmup_s = time.perf_counter() - start
  times = []
  for _ in range(STEPS.value):
    start = time.perf_counter()
    float(step(batch)["total"])
    times.append(time.perf_counter() - start)
  print(
    json.dumps(
      {
        "preset": config.preset,
        "batch": b,
        "image_size": s,
        "perceptual": perceptual,
        "warmup_s": round(warmup_s, 2),
        "step_ms_median": round(1000 * float(np.median(times)), 1),
        "step_ms_min": round(1000 * min(times), 1),
        "step_ms_max": round(1000 * max(times), 1),
        "steps": len(times),
      }
    ),
    flush=True,
  )
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
