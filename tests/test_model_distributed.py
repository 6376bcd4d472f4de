"""MirroredStrategy on two logical CPUs gives the same update as one device (DESIGN.md §9).

The CPU must be split into logical devices before TensorFlow initialises, and pytest imports
every test module in one process, so the comparison runs in a fresh interpreter.
"""

import textwrap
import unittest

import app_fixtures

_SCRIPT = textwrap.dedent(
  """
  import json

  import keras
  import numpy as np
  import tensorflow as tf

  from copart_tf.training import strategy as strategy_lib

  strategy_lib.split_cpu(2)  # before any op runs

  from copart_tf.model.copart_model import CoPartModel
  from copart_tf.ops import affine as affine_lib

  SIZE, BATCH, LR = 32, 4, 0.05
  rng = np.random.default_rng(0)
  data = {
    "source": tf.constant(rng.random((BATCH, SIZE, SIZE, 3)), tf.float32),
    "target": tf.constant(rng.random((BATCH, SIZE, SIZE, 3)), tf.float32),
    "warp_affines": affine_lib.random_affine(BATCH, tf.constant([1, 2])),
  }


  def make_model():
    keras.utils.set_random_seed(0)
    model = CoPartModel(num_parts=2, preset="tiny", image_size=SIZE)
    model.build()
    # Plain SGD: the update is linear in the gradient, so a gradient summed over replicas
    # without dividing the loss by num_replicas_in_sync would show up as a 2x larger step
    # (Adam's first step is nearly scale-invariant and would hide it).
    optimizer = keras.optimizers.SGD(LR)
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
    return model


  # One device.
  single = make_model()
  initial = [w.copy() for w in single.get_weights()]
  initial_trainable = [v.numpy() for v in single.trainable_variables]
  single_logs = single.train_step(data)  # eager: a second trace would double the runtime
  single_after = [v.numpy() for v in single.trainable_variables]

  # Two replicas, batch split 2 + 2, as the trainer runs it.
  strategy = tf.distribute.MirroredStrategy(
    [d.name for d in tf.config.list_logical_devices("CPU")]
  )
  with strategy.scope():
    mirrored = make_model()
  mirrored.set_weights(initial)
  dataset = tf.data.Dataset.from_tensor_slices(data).batch(BATCH)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  dist_batch = next(iter(strategy.experimental_distribute_dataset(dataset.with_options(options))))
  step_fn = tf.function(mirrored.train_step, autograph=False)


  @tf.function(autograph=False)
  def train_fn(batch):
    return strategy.run(step_fn, args=(batch,))


  logs = train_fn(dist_batch)
  per_replica = [x.shape[0] for x in strategy.experimental_local_results(dist_batch["source"])]
  mirrored_total = float(strategy.reduce("MEAN", logs["total"], axis=None))

  diffs, steps, replica_gaps = [], [], []
  for before, after, variable in zip(
    initial_trainable, single_after, mirrored.trainable_variables, strict=True
  ):
    values = [v.numpy() for v in strategy.experimental_local_results(variable.value)]
    diffs.append(float(np.max(np.abs(values[0] - after))))
    steps.append(float(np.max(np.abs(after - before))))
    replica_gaps.append(float(np.max(np.abs(values[0] - values[1]))))
  print(
    "RESULT "
    + json.dumps(
      {
        "replicas": strategy.num_replicas_in_sync,
        "per_replica_batch": per_replica,
        "num_variables": len(diffs),
        "max_diff": max(diffs),
        "max_step": max(steps),
        "max_replica_gap": max(replica_gaps),
        "single_total": float(single_logs["total"]),
        "mirrored_total": mirrored_total,
        "iterations": [int(m.optimizer.iterations.numpy()) for m in (single, mirrored)],
      }
    )
  )
  """
)


class MirroredStrategyTest(unittest.TestCase):
  def test_two_replicas_match_one_device(self):
    code, result, out, err = app_fixtures.run_script_for_result(_SCRIPT, timeout=600)
    self.assertEqual(code, 0, err[-4000:])
    self.assertIsNotNone(result, out[-2000:])
    print(f"\nmirrored vs single device: {result}")
    self.assertEqual(result["replicas"], 2)
    self.assertEqual(result["per_replica_batch"], [2, 2])
    self.assertEqual(result["iterations"], [1, 1])
    self.assertGreater(result["num_variables"], 10)
    # The step is large enough that a 2x gradient error could not hide under the tolerance.
    self.assertGreater(result["max_step"], 1e-3)
    self.assertLess(result["max_diff"], 1e-5)
    self.assertLess(result["max_replica_gap"], 1e-7)
    self.assertAlmostEqual(result["single_total"], result["mirrored_total"], delta=1e-5)


if __name__ == "__main__":
  unittest.main()
