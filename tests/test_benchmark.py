"""`python benchmarks/benchmark.py` and its library `benchmarks.perf`: JSON schema, FLOP counting,
mixed precision.

No timing assertions: the numbers depend on the machine and its load. The CLI runs use the tiny
preset at 64x64 with two timed steps, so the whole file takes well under a minute on an idle
2-core machine.
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from benchmarks.perf import flops as flops_lib
from benchmarks.perf import harness, reference, stats
from benchmarks.perf import matmul as matmul_lib
from benchmarks.perf.config import BenchmarkConfig
from copart_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "benchmark.py")
TIMEOUT = 600
TINY_FLAGS = [
  "--preset=tiny",
  "--image_size=64",
  "--num_parts=3",
  "--steps=2",
  "--warmup=1",
  "--matmul_size=256",
]
TIMING_KEYS = {"n", "median", "p10", "p90", "mean", "min", "max", "first_call_s"}


def run_process(*flags):
  """Runs the benchmark script to completion; returns the CompletedProcess (any exit status).

  No PYTHONPATH is added: the script puts the checkout on its import path itself.
  """
  return subprocess.run(
    [sys.executable, SCRIPT, *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
    check=False,
  )


def run_cli(*flags):
  """Runs the benchmark CLI; returns (parsed JSON of stdout, stderr)."""
  proc = run_process(*flags)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout), proc.stderr


def check_common(test, result):
  test.assertEqual(result["benchmark"], "copart_tf.benchmark")
  machine = result["machine"]
  for key in ("cpu_model", "cpu_count", "tensorflow", "TF_ENABLE_ONEDNN_OPTS", "date"):
    test.assertIn(key, machine)
  test.assertEqual(machine["TF_ENABLE_ONEDNN_OPTS"], "1")
  params = result["model"]["params"]
  test.assertGreater(params["encoder_and_heads"], 0)
  test.assertGreater(params["decoder"], 0)
  test.assertEqual(params["total"], params["encoder_and_heads"] + params["decoder"])
  model_flops = result["model"]["flops"]
  test.assertGreater(model_flops["inference_per_image"], 0)
  test.assertGreater(model_flops["train_per_example"], model_flops["train_forward_per_example"])
  test.assertGreater(result["matmul"]["gflops"], 0)
  test.assertGreater(result["memory"]["process_peak_rss_mb"], 0)
  test.assertEqual(result["reference"]["train_step_s"], 9.6)
  test.assertFalse(result["comparison"]["same_setting"])


class CliTest(tf.test.TestCase):
  def test_train(self):
    # pyramid: the VGG-19 path (the default) costs ~15 s more here; MixedPrecisionTest builds it.
    result, _ = run_cli(*TINY_FLAGS, "--what=train", "--perceptual=pyramid")
    check_common(self, result)
    self.assertNotIn("infer", result)
    train = result["train"]
    self.assertTrue(TIMING_KEYS <= set(train["step_ms"]))
    self.assertEqual(len(train["step_ms"]["samples_ms"]), 2)
    self.assertTrue(TIMING_KEYS <= set(train["forward_ms"]))
    self.assertGreater(train["images_per_second"], 0)
    self.assertIsInstance(train["backward_ms"], float)
    self.assertTrue(train["losses_finite"])
    self.assertIn("total", train["losses"])
    self.assertEqual(train["perceptual"]["loss"], "pyramid")
    self.assertIn("fraction_of_step", train["perceptual"])
    self.assertTrue(TIMING_KEYS <= set(train["perceptual"]["step_without_perceptual_ms"]))
    self.assertTrue(TIMING_KEYS <= set(train["warp"]["forward_backward_ms"]))
    self.assertGreater(train["warp"]["fraction_of_step"], 0)
    self.assertGreater(train["memory"]["peak_rss_mb"] or 1, 0)
    self.assertGreater(train["step"]["achieved_gflops"], 0)
    self.assertIn("utilisation", train["step"])
    model_flops = result["model"]["flops"]
    self.assertLess(
      model_flops["train_per_example_without_perceptual"], model_flops["train_per_example"]
    )
    comparison = result["comparison"]
    for key in ("train_step_ratio", "train_step_target_met", "forward_ratio", "backward_ratio"):
      self.assertIn(key, comparison)

  def test_infer(self):
    result, _ = run_cli(*TINY_FLAGS, "--what=infer", "--perceptual=none")
    check_common(self, result)
    self.assertNotIn("train", result)
    infer = result["infer"]
    for backend in ("saved_model", "keras"):
      self.assertEqual(sorted(infer[backend]), ["1", "16"])
      for entry in infer[backend].values():
        self.assertTrue(TIMING_KEYS <= set(entry["latency_ms"]))
        self.assertGreater(entry["images_per_second"], 0)
        self.assertIn("utilisation", entry)
    self.assertGreater(infer["export_seconds"], 0)
    self.assertIn("inference_speedup_batch1", result["comparison"])

  def test_bad_flag(self):
    proc = run_process("--preset=tiny", "--batch=0")
    self.assertEqual(proc.returncode, 2)
    self.assertIn("error: --batch=0", proc.stderr)

  def test_quality_is_not_a_subcommand(self):
    proc = run_process("quality")
    self.assertEqual(proc.returncode, 2)
    self.assertIn("benchmarks/quality_ladder.py", proc.stderr)


class MixedPrecisionTest(tf.test.TestCase):
  """mixed_bfloat16: bf16 layers, float32 variables, poses / masks / losses in float32."""

  def tearDown(self):
    keras.mixed_precision.set_global_policy("float32")  # the policy is global
    super().tearDown()

  def _losses(self, policy, steps):
    config = BenchmarkConfig(
      preset="tiny", image_size=32, num_parts=3, batch=2, mixed_precision=policy
    )
    with harness.precision_policy(policy):
      model = harness.build_model(config, with_optimizer=True)
      data = harness.synthetic_batch(config, config.batch)
      outputs = model.forward_pair(data["source"], data["target"], data["warp_affines"])
      for key in ("source_masks", "target_reconstruction", "target_affines", "canonical_masks"):
        self.assertEqual(outputs[key].dtype, tf.float32, key)
      losses = model.compute_losses(data["source"], data["target"], data["warp_affines"], outputs)
      logs = [model.train_step(data) for _ in range(steps)]
      self.assertEqual(model.encoder.compute_dtype, policy.replace("mixed_", "") or "float32")
      self.assertTrue(all(v.dtype == "float32" for v in model.trainable_variables))
    return {k: float(v) for k, v in losses.items()}, logs

  def test_bfloat16_train_step_matches_float32(self):
    reference_losses, _ = self._losses("float32", steps=0)
    losses, logs = self._losses("mixed_bfloat16", steps=1)
    self.assertEqual(keras.mixed_precision.global_policy().name, "float32")  # restored
    self.assertTrue(all(math.isfinite(float(v)) for v in logs[0].values()))
    self.assertEqual(set(losses), set(reference_losses))
    for name, value in losses.items():
      self.assertTrue(math.isfinite(value), name)
      self.assertAllClose(value, reference_losses[name], rtol=0.1, atol=0.05, msg=name)

  def test_policy_restored_after_error(self):
    with self.assertRaises(RuntimeError):
      with harness.precision_policy("mixed_bfloat16"):
        self.assertEqual(keras.mixed_precision.global_policy().name, "mixed_bfloat16")
        raise RuntimeError("boom")
    self.assertEqual(keras.mixed_precision.global_policy().name, "float32")


class LibraryTest(tf.test.TestCase):
  def test_summarize(self):
    summary = stats.summarize([0.001 * i for i in range(1, 11)])
    self.assertEqual(summary["n"], 10)
    self.assertAllClose(summary["median"], 5.5)
    self.assertAllClose(summary["p10"], np.percentile(np.arange(1, 11), 10))
    self.assertAllClose(summary["p90"], np.percentile(np.arange(1, 11), 90))
    self.assertEqual(stats.per_second(4, 500.0), 8.0)

  def test_time_calls_counts_calls(self):
    calls = []
    out = stats.time_calls(lambda: calls.append(1), steps=3, warmup=2)
    self.assertLen(calls, 5)
    self.assertEqual(out["n"], 3)
    self.assertLen(out["samples_ms"], 3)

  def test_graph_flops_matmul_and_dead_ops(self):
    @tf.function
    def fn(a, b, c):
      unused = tf.matmul(c, c)  # dead: nothing depends on it
      del unused
      return tf.matmul(a, b)

    concrete = fn.get_concrete_function(
      tf.TensorSpec([8, 16], tf.float32),
      tf.TensorSpec([16, 4], tf.float32),
      tf.TensorSpec([32, 32], tf.float32),
    )
    counted = flops_lib.graph_flops(concrete)
    self.assertEqual(counted["total"], 2 * 8 * 16 * 4)
    self.assertEqual(counted["by_op"], {"MatMul": 2 * 8 * 16 * 4})
    self.assertEqual(counted["profiler_total_unpruned"], 2 * 8 * 16 * 4 + 2 * 32**3)

  def test_conv_flops_include_backprop(self):
    layer = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)
    layer.build((1, 16, 16, 4))

    @tf.function
    def grads(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x))
      return [y] + tape.gradient(y, [x, layer.kernel])  # y: else the forward conv is dead

    counted = flops_lib.graph_flops(grads.get_concrete_function(tf.TensorSpec([1, 16, 16, 4])))
    forward = 2 * 16 * 16 * 3 * 3 * 4 * 8
    self.assertEqual(counted["by_op"]["Conv2D"], forward)
    self.assertEqual(counted["by_op"]["Conv2DBackpropInput"], forward)
    self.assertEqual(counted["by_op"]["Conv2DBackpropFilter"], forward)

  def test_matmul_gflops(self):
    out = matmul_lib.matmul_gflops(size=128, steps=2, warmup=1)
    self.assertEqual(out["flops_per_call"], 2 * 128**3)
    self.assertGreater(out["gflops"], 0)

  def test_config_validation(self):
    BenchmarkConfig().validate()
    for bad in (
      {"preset": "huge"},
      {"batch": 0},
      {"what": "everything"},
      {"perceptual": "imagenet"},
      {"mixed_precision": "float16"},
      {"image_size": 30},
      {"infer_batches": ()},
    ):
      with self.assertRaises(ConfigError, msg=str(bad)):
        BenchmarkConfig(**bad).validate()

  def test_reference_ratios(self):
    config = BenchmarkConfig(preset="paper", batch=1, image_size=128, num_parts=10)
    result = {
      "train": {
        "step_ms": {"median": 4800.0},
        "forward_ms": {"median": 1550.0},
        "backward_ms": 3250.0,
        "memory": {"peak_rss_mb": 1740.8},
      },
      "infer": {
        "saved_model": {"1": {"images_per_second": 0.6452}, "16": {"images_per_second": 1.0}}
      },
    }
    out = reference.compare(result, config)
    self.assertTrue(out["same_setting"])
    self.assertAllClose(out["train_step_ratio"], 0.5)
    self.assertTrue(out["train_step_target_met"])
    self.assertAllClose(out["forward_ratio"], 0.5)
    self.assertAllClose(out["train_peak_rss_ratio"], 0.5)
    self.assertAllClose(out["inference_speedup_batch1"], 2.0, rtol=1e-3)
    self.assertTrue(out["inference_target_met"])
    self.assertEqual(out["inference_speedup_best_batch"]["batch"], 16)
    config.batch = 2  # per-example comparison, flagged
    out = reference.compare(result, config)
    self.assertFalse(out["same_setting"])
    self.assertAllClose(out["train_step_ratio"], 0.25)


if __name__ == "__main__":
  tf.test.main()
