"""FusedAdam gives Keras Adam's update, on one device and under MirroredStrategy."""

import textwrap

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.apps import testing
from copart_tf.training.fused_adam import FusedAdam


def _run(optimizer, steps, seed=0, traced=True):
  keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  variables = [
    keras.Variable(rng.normal(size=shape).astype("float32")) for shape in ((3, 3, 4, 5), (5,), (7,))
  ]
  optimizer.build(variables)

  def apply(gradients):
    optimizer.apply(gradients, variables)

  apply_fn = tf.function(apply) if traced else apply
  for _ in range(steps):
    gradients = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables]
    apply_fn(gradients)
  return [v.numpy() for v in variables], int(optimizer.iterations.numpy())


class FusedAdamTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(
    ("plain", {}, True),
    ("eager", {}, False),
    ("clipnorm_epsilon_betas", {"global_clipnorm": 1.0, "epsilon": 1e-3, "beta_1": 0.5}, True),
    (
      "schedule",
      {"learning_rate": keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)},
      True,
    ),
  )
  def test_matches_keras_adam(self, kwargs, traced):
    kwargs = {"learning_rate": 0.05, **kwargs}
    expected, expected_steps = _run(keras.optimizers.Adam(**kwargs), 4, traced=traced)
    got, steps = _run(FusedAdam(**kwargs), 4, traced=traced)
    self.assertEqual(steps, expected_steps)
    # Same maths, different float32 operation order: ~1e-6 on steps of lr = 0.05.
    for a, b in zip(got, expected, strict=True):
      self.assertAllClose(a, b, rtol=1e-5, atol=1e-5)
    # The update moved the variables (a no-op optimizer would fail the comparison above only
    # if Adam did not move them either).
    initial, _ = _run(keras.optimizers.Adam(**kwargs), 0, traced=traced)
    self.assertGreater(
      max(float(np.max(np.abs(a - b))) for a, b in zip(got, initial, strict=True)), 1e-2
    )

  def test_amsgrad_falls_back_to_keras(self):
    expected, _ = _run(keras.optimizers.Adam(0.05, amsgrad=True), 3)
    got, _ = _run(FusedAdam(0.05, amsgrad=True), 3)
    for a, b in zip(got, expected, strict=True):
      self.assertAllClose(a, b, rtol=1e-5, atol=1e-5)

  def test_serializes(self):
    optimizer = FusedAdam(learning_rate=0.01, beta_1=0.8)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    self.assertIsInstance(clone, FusedAdam)
    self.assertAlmostEqual(clone.beta_1, 0.8)


_MIRRORED_SCRIPT = textwrap.dedent(
  """
  import json

  import keras
  import numpy as np
  import tensorflow as tf

  from copart_tf.training import strategy as strategy_lib

  strategy_lib.split_cpu(2)  # before any op runs

  from copart_tf.training.fused_adam import FusedAdam

  rng = np.random.default_rng(0)
  initial = [rng.normal(size=s).astype("float32") for s in ((4, 6), (6,))]
  grads = [[rng.normal(size=v.shape).astype("float32") for v in initial] for _ in range(3)]

  def single():
    variables = [keras.Variable(v) for v in initial]
    optimizer = keras.optimizers.Adam(0.05)
    optimizer.build(variables)
    for step in grads:
      optimizer.apply([tf.constant(g) for g in step], variables)
    return [v.numpy() for v in variables]

  strategy = tf.distribute.MirroredStrategy(
    [d.name for d in tf.config.list_logical_devices("CPU")]
  )
  with strategy.scope():
    variables = [keras.Variable(v) for v in initial]
    optimizer = FusedAdam(0.05)
    optimizer.build(variables)

  @tf.function
  def apply(step):
    def replica_fn():
      # Each replica holds half of the summed gradient: the all-reduce restores it.
      optimizer.apply([g * 0.5 for g in step], variables)
    strategy.run(replica_fn)

  for step in grads:
    apply(step)
  expected = single()
  diffs, gaps = [], []
  for variable, want in zip(variables, expected):
    values = [v.numpy() for v in strategy.experimental_local_results(variable.value)]
    diffs.append(float(np.max(np.abs(values[0] - want))))
    gaps.append(float(np.max(np.abs(values[0] - values[1]))))
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, initial))
  print("RESULT " + json.dumps({"max_diff": max(diffs), "max_gap": max(gaps), "moved": moved,
                                "replicas": strategy.num_replicas_in_sync}))
  """
)


class FusedAdamMirroredTest(tf.test.TestCase):
  def test_two_replicas_match_keras_adam_on_one_device(self):
    code, result, out, err = testing.run_script_for_result(_MIRRORED_SCRIPT, timeout=300)
    self.assertEqual(code, 0, err[-4000:])
    self.assertIsNotNone(result, out[-2000:])
    self.assertEqual(result["replicas"], 2)
    self.assertGreater(result["moved"], 1e-2)
    self.assertLess(result["max_diff"], 2e-5)
    self.assertLess(result["max_gap"], 1e-7)


if __name__ == "__main__":
  tf.test.main()
