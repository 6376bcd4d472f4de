"""The training-step measurements: full step, forward only, without the perceptual loss, warp."""

import math

import tensorflow as tf

from benchmarks.perf import components, harness, machine, stats
from copart_tf.ops import affine as affine_lib
from copart_tf.ops import warp as warp_lib

PERCEPTUAL_METHOD = (
  "step time with the perceptual loss minus step time with perceptual_loss='none' (same model, "
  "separately traced tf.function), over the full step time"
)
WARP_METHOD = (
  "forward + backward of the warp section of forward_pair in isolation (parts folded into the "
  "batch, coverage channel, canonical / source / retarget warps or the composed warp, concat; "
  "plus the border-padded warp of the target image, forward only), same shapes and jit setting, "
  "gradients w.r.t. the part maps and the poses; over the full step time. Interactions with the "
  "rest of the step (caches, fusion) are not captured"
)


def _warp_section(model):
  """The warp ops of `CoPartModel.forward_pair`, for an isolated forward + backward timing."""

  def section(target, warp_affines, maps, source_affines, target_affines, cotangent):
    with tf.GradientTape() as tape:
      tape.watch([maps, source_affines, target_affines])
      warped_image = warp_lib.warp_affine(target, warp_affines, padding="border")
      warped = model._training_warps(maps, source_affines, target_affines)
      loss = tf.reduce_sum(warped * cotangent)
    grads = tape.gradient(loss, [maps, source_affines, target_affines])
    return [tf.reduce_sum(warped_image)] + [tf.reduce_sum(g) for g in grads]

  return section


def _warp_inputs(model, config):
  b, s, k = config.batch, config.image_size, model.num_parts
  h, c = s // 4, model.preset.latent_channels
  rng = tf.random.Generator.from_seed(config.seed)

  def poses():
    cos_sin = tf.math.l2_normalize(rng.normal([b, k, 2]), axis=-1)
    scale = rng.uniform([b, k, 2], 0.3, 1.2)
    shift = rng.uniform([b, k, 2], -0.5, 0.5)
    return affine_lib.from_pose(cos_sin, scale, shift)

  data = harness.synthetic_batch(config, b)
  return (
    data["target"],
    data["warp_affines"],
    rng.normal([b, h, h, k + 1, c]),
    poses(),
    poses(),
    rng.normal([3 * b * k, h, h, c + 1]),
  )


def measure_train(model, config, flops, peak_gflops):
  """Times `model.train_step` and its parts. The model must have its optimizer built.

  Args:
    model: a `CoPartModel` from `harness.build_model(config, with_optimizer=True)`.
    config: `BenchmarkConfig`.
    flops: the `measure_flops` dict (for the achieved GFLOP/s).
    peak_gflops: the machine's matmul GFLOP/s (None: no utilisation).

  Returns:
    dict: step_ms, images_per_second (examples = source/target pairs per second), forward_ms,
    backward_ms (step median - forward median), perceptual {...}, warp {...}, losses of the last
    step, losses_finite, flops/utilisation, memory.
  """
  data = harness.synthetic_batch(config, config.batch)
  jit = config.jit_compile
  out = {"batch": config.batch, "jit_compile": jit}
  with machine.PhaseMemory() as memory:
    step_fn = tf.function(model.train_step, jit_compile=jit)
    last = {}

    def step():
      logs = step_fn(data)
      last["logs"] = logs
      return float(logs["total"])  # blocks until the step is done

    out["step_ms"] = stats.time_calls(step, config.steps, config.warmup)
    step_ms = out["step_ms"]["median"]
    out["images_per_second"] = stats.per_second(config.batch, step_ms)
    losses = {name: float(value) for name, value in last["logs"].items()}
    out["losses"] = {name: round(value, 6) for name, value in losses.items()}
    out["losses_finite"] = all(math.isfinite(v) for v in losses.values())

    train_fn = harness.train_graph_fn(model, with_gradients=False)
    forward_fn = tf.function(train_fn, jit_compile=jit)
    args = (data["source"], data["target"], data["warp_affines"])
    out["forward_ms"] = stats.time_calls(
      lambda: forward_fn(*args).numpy(), config.steps, config.warmup
    )
    out["backward_ms"] = round(step_ms - out["forward_ms"]["median"], 3)
    out["backward_method"] = (
      "step median - forward median (forward = forward_pair + compute_losses in a tf.function); "
      "includes the optimizer update"
    )

    if config.perceptual != "none":
      saved = model.perceptual_loss
      model.perceptual_loss = "none"
      try:
        bare_fn = tf.function(model.train_step, jit_compile=jit)
        bare = stats.time_calls(lambda: float(bare_fn(data)["total"]), config.steps, config.warmup)
      finally:
        model.perceptual_loss = saved
      perceptual_ms = round(step_ms - bare["median"], 3)
      out["perceptual"] = {
        "loss": config.perceptual,
        "step_without_perceptual_ms": bare,
        "perceptual_ms": perceptual_ms,
        "fraction_of_step": round(perceptual_ms / step_ms, 4),
        "method": PERCEPTUAL_METHOD,
      }
    else:
      out["perceptual"] = {"loss": "none", "perceptual_ms": 0.0, "fraction_of_step": 0.0}

    warp_fn = tf.function(_warp_section(model), jit_compile=jit)
    warp_args = _warp_inputs(model, config)
    warp = stats.time_calls(
      lambda: [t.numpy() for t in warp_fn(*warp_args)], config.steps, config.warmup
    )
    out["warp"] = {
      "compose_warps": model.compose_warps,
      "forward_backward_ms": warp,
      "fraction_of_step": round(warp["median"] / step_ms, 4),
      "method": WARP_METHOD,
    }
    if config.breakdown:
      out["components"] = components.measure_components(model, config)
  out["memory"] = memory.result()
  out["flops_per_example"] = flops["train_per_example"]
  out["step"] = harness.utilisation(flops["train_per_example"] * config.batch, step_ms, peak_gflops)
  out["forward"] = harness.utilisation(
    flops["train_forward_per_example"] * config.batch, out["forward_ms"]["median"], peak_gflops
  )
  return out
