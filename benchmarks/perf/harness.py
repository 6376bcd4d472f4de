"""Helpers shared by the phases: model construction (the trainer's), inputs, FLOPs, utilisation.

Imports none of the phase modules (`train`, `infer`, `serve`); `benchmarks.perf.run` imports them
and this one.
"""

import contextlib
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.perf import flops as flops_lib

LEARNING_RATE = 5e-5  # the reference's Adam learning rate (the value does not change the timing)


@contextlib.contextmanager
def precision_policy(name):
  """Sets Keras' global dtype policy for the block and restores the previous one after it."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def perceptual_mode(config):
  """The model's `perceptual_loss` for the `--perceptual` flag."""
  return {"random": "vgg", "pyramid": "pyramid", "none": "none"}[config.perceptual]


def build_model(config, with_optimizer):
  """A built `CoPartModel` as the trainer builds it (Adam compiled and built first).

  Must run inside `precision_policy(config.mixed_precision)`.

  Args:
    config: `BenchmarkConfig`.
    with_optimizer: compile with Adam and build its slots (needed for `train_step`).

  Returns:
    the model; with `perceptual="random"` its perceptual loss is VGG-19 with random weights.
  """
  from copart_tf.losses import perceptual as perceptual_lib
  from copart_tf.model.copart_model import CoPartModel, config_from_settings

  keras.utils.set_random_seed(config.seed)
  # The trainer's settings -> model mapping; what the benchmark does not set keeps the defaults.
  settings = {
    name: getattr(config, name)
    for name in ("num_parts", "preset", "image_size", "compose_warps", "seed")
  }
  model = CoPartModel.from_config(config_from_settings(settings, perceptual_mode(config)))
  model.build()
  if with_optimizer:
    optimizer = keras.optimizers.Adam(LEARNING_RATE)  # as the trainer
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
  if config.perceptual == "random":
    model.set_perceptual_loss(perceptual_lib.VGGPerceptualLoss("random"))
  return model


def synthetic_batch(config, batch):
  """Random training inputs: source and target `[B, S, S, 3]` in [0, 1] and warps W `[B, 2, 3]`."""
  from copart_tf.ops import affine as affine_lib

  s = config.image_size
  rng = np.random.default_rng(config.seed)
  return {
    "source": tf.constant(rng.random((batch, s, s, 3), dtype=np.float32)),
    "target": tf.constant(rng.random((batch, s, s, 3), dtype=np.float32)),
    "warp_affines": affine_lib.random_affine(batch, tf.constant([config.seed, 1], tf.int32)),
  }


def train_graph_fn(model, with_gradients):
  """forward_pair + compute_losses (+ gradients of the total w.r.t. the trainable variables)."""

  def fn(source, target, warp_affines):
    with tf.GradientTape() as tape:
      outputs = model.forward_pair(source, target, warp_affines)
      total = model.compute_losses(source, target, warp_affines, outputs)["total"]
    if not with_gradients:
      return total
    return [total] + tape.gradient(total, model.trainable_variables)

  return fn


def measure_flops(model, config):
  """FLOPs of inference per image and of training per example (see `benchmarks.perf.flops`).

  Inference: `model(images)` at batch 1. Training: forward_pair + compute_losses + the gradient
  w.r.t. every trainable variable at batch `config.batch`, divided by the batch; the optimizer
  update (~10 FLOPs per parameter) is not included. Also the forward-only part, and the training
  FLOPs without the perceptual loss.
  """
  s = config.image_size
  start = time.perf_counter()
  infer = tf.function(lambda x: model(x)).get_concrete_function(
    tf.TensorSpec([1, s, s, 3], tf.float32)
  )
  specs = (
    tf.TensorSpec([config.batch, s, s, 3], tf.float32),
    tf.TensorSpec([config.batch, s, s, 3], tf.float32),
    tf.TensorSpec([config.batch, 2, 3], tf.float32),
  )
  train = tf.function(train_graph_fn(model, True)).get_concrete_function(*specs)
  forward = tf.function(train_graph_fn(model, False)).get_concrete_function(*specs)
  infer_flops = flops_lib.graph_flops(infer)
  train_flops = flops_lib.graph_flops(train)
  forward_flops = flops_lib.graph_flops(forward)
  out = {
    "method": (
      "TensorFlow's registered per-op FLOP statistics (as tf.compat.v1.profiler "
      "float_operation) summed over the live ops of the traced concrete function; "
      "1 multiply-add = 2 FLOPs"
    ),
    "inference_per_image": infer_flops["total"],
    "train_per_example": train_flops["total"] // config.batch,
    "train_forward_per_example": forward_flops["total"] // config.batch,
    "inference_by_op": infer_flops["by_op"],
    "train_by_op": {k: v // config.batch for k, v in train_flops["by_op"].items()},
    "unknown_shape_ops": {
      "inference": infer_flops["unknown_shape_ops"],
      "train": train_flops["unknown_shape_ops"],
    },
    "profiler_unpruned": {
      "inference_per_image": infer_flops["profiler_total_unpruned"],
      "train_per_example": (train_flops["profiler_total_unpruned"] or 0) // config.batch,
    },
  }
  if config.perceptual != "none":
    saved = model.perceptual_loss
    model.perceptual_loss = "none"
    try:
      bare = tf.function(train_graph_fn(model, True)).get_concrete_function(*specs)
      out["train_per_example_without_perceptual"] = (
        flops_lib.graph_flops(bare)["total"] // config.batch
      )
    finally:
      model.perceptual_loss = saved
  out["seconds"] = round(time.perf_counter() - start, 2)
  return out


def _gflops(flops, milliseconds):
  if not flops or not milliseconds:
    return None
  return round(flops / (milliseconds / 1000.0) / 1e9, 3)


def utilisation(flops, milliseconds, peak_gflops):
  """Achieved GFLOP/s of `flops` done in `milliseconds`, and its fraction of `peak_gflops`."""
  achieved = _gflops(flops, milliseconds)
  return {
    "achieved_gflops": achieved,
    "utilisation": round(achieved / peak_gflops, 4) if achieved and peak_gflops else None,
  }
