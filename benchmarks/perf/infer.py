"""Inference measurements: the exported SavedModel's serving_default, and the in-memory model."""

import time

import numpy as np
import tensorflow as tf

from benchmarks.perf import harness, machine, stats


def _uint8_images(config, batch):
  rng = np.random.default_rng(config.seed + batch)
  s = config.image_size
  return tf.constant(rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8))


def _timed(fn, config, batch, flops_per_image, peak_gflops):
  timing = stats.time_calls(fn, config.steps, config.warmup)
  timing.pop("samples_ms")
  return {
    "latency_ms": timing,
    "images_per_second": stats.per_second(batch, timing["median"]),
    **harness.utilisation(flops_per_image * batch, timing["median"], peak_gflops),
  }


def measure_infer(model, config, export_base, flops, peak_gflops):
  """Exports `model`, loads the SavedModel and times serving_default on uint8 images.

  Args:
    model: a built `CoPartModel`.
    config: `BenchmarkConfig` (infer_batches, steps, warmup, image_size).
    export_base: directory to export into (left for `serve` to reuse).
    flops: the `measure_flops` dict.
    peak_gflops: the machine's matmul GFLOP/s.

  Returns:
    dict: export_seconds, load_seconds, saved_model {batch: {latency_ms, images_per_second,
    achieved_gflops, utilisation}}, keras {batch: same}, memory.
  """
  from copart_tf.export import saved_model as export_lib

  per_image = flops["inference_per_image"]
  out = {"input": f"uint8 [N, {config.image_size}, {config.image_size}, 3]"}
  with machine.PhaseMemory() as memory:
    start = time.perf_counter()
    version_dir = export_lib.export(model, export_base)
    out["export_seconds"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures[export_lib.SERVING_DEFAULT]
    out["load_seconds"] = round(time.perf_counter() - start, 2)

    out["saved_model"] = {}
    for batch in config.infer_batches:
      images = _uint8_images(config, batch)
      out["saved_model"][str(batch)] = _timed(
        lambda images=images: signature(images=images)["part_labels"].numpy(),
        config,
        batch,
        per_image,
        peak_gflops,
      )

    # The in-memory Keras model alone in a tf.function (same uint8 input, no resizing or pose
    # conversion): the network's own cost, next to the export's whole serving_default.
    @tf.function(jit_compile=config.jit_compile, reduce_retracing=True)
    def keras_forward(images):
      return model(tf.cast(images, tf.float32) / 255.0)

    out["keras"] = {}
    for batch in config.infer_batches:
      images = _uint8_images(config, batch)
      out["keras"][str(batch)] = _timed(
        lambda images=images: keras_forward(images)["part_labels"].numpy(),
        config,
        batch,
        per_image,
        peak_gflops,
      )
    out["keras_method"] = (
      "model(uint8 / 255) in a tf.function (jit_compile as --jit_compile), every output of "
      "model.call computed; the SavedModel's serving_default also resizes and converts poses"
    )
  out["memory"] = memory.result()
  return out
