"""Optional per-component breakdown of the training step (`--breakdown`).

Each block of `CoPartModel.forward_pair` is timed alone with the shapes it sees in a training step
of batch B: forward only, and forward + backward (gradients w.r.t. its variables and, except for
the encoder whose input is data, its input). The loss of the isolated block is
``sum(output^2)``, so the backward pass needs the forward output as in the real step. Summed, the
components do not add up exactly to the step: the mask assembly, the losses' moments, the
optimizer update and the interactions between blocks are not in any component.
"""

import tensorflow as tf

from benchmarks.perf import flops as flops_lib
from benchmarks.perf import stats

METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()


def _square_sum(outputs):
  total = 0.0
  for t in tf.nest.flatten(outputs):
    if t.dtype.is_floating:
      total += tf.reduce_sum(tf.square(tf.cast(t, tf.float32)))
  return total


def _component(fn, inputs, variables, watch_inputs, config):
  """Times fn(*inputs) forward, and forward + backward; counts the FLOPs of the latter."""
  jit = config.jit_compile
  specs = [tf.TensorSpec(x.shape, x.dtype) for x in inputs]

  def forward(*args):
    return _square_sum(fn(*args))

  def forward_backward(*args):
    with tf.GradientTape() as tape:
      if watch_inputs:
        tape.watch(list(args))
      loss = _square_sum(fn(*args))
    targets = list(variables) + (list(args) if watch_inputs else [])
    grads = tape.gradient(loss, targets)
    return [loss] + [tf.reduce_sum(g) for g in grads if g is not None]

  forward_fn = tf.function(forward, jit_compile=jit)
  both_fn = tf.function(forward_backward, jit_compile=jit)
  fwd = stats.time_calls(lambda: forward_fn(*inputs).numpy(), config.steps, config.warmup)
  both = stats.time_calls(
    lambda: [t.numpy() for t in both_fn(*inputs)], config.steps, config.warmup
  )
  fwd.pop("samples_ms")
  both.pop("samples_ms")
  flops = {
    "forward": flops_lib.graph_flops(forward_fn.get_concrete_function(*specs))["total"],
    "forward_backward": flops_lib.graph_flops(both_fn.get_concrete_function(*specs))["total"],
  }
  return {
    "forward_ms": fwd,
    "forward_backward_ms": both,
    "backward_ms": round(both["median"] - fwd["median"], 3),
    "flops": flops,
    "forward_gflops": _rate(flops["forward"], fwd["median"]),
    "forward_backward_gflops": _rate(flops["forward_backward"], both["median"]),
  }


def _rate(flops, ms):
  return round(flops / (ms / 1000.0) / 1e9, 3) if flops and ms else None


def measure_components(model, config):
  """Forward and forward + backward time of the encoder, heads, decoder and perceptual loss.

  Args:
    model: a built `CoPartModel`.
    config: `BenchmarkConfig` (batch, image_size, steps, warmup, jit_compile, perceptual).

  Returns:
    dict {component: {forward_ms, forward_backward_ms, backward_ms, flops, *_gflops}}, plus
    ``sum_forward_backward_ms`` and ``method``.
  """
  b, s, k = config.batch, config.image_size, model.num_parts
  h = s // 4
  channels = model.encoder.output_channels
  latent = model.preset.latent_channels
  rng = tf.random.Generator.from_seed(config.seed + 7)
  out = {}
  out["encoder"] = _component(
    model.encoder,
    [rng.uniform([3 * b, s, s, 3])],
    model.encoder.trainable_variables,
    False,
    config,
  )
  features = rng.uniform([3 * b, h, h, channels])
  out["transform_head"] = _component(
    model.transform_head, [features], model.transform_head.trainable_variables, True, config
  )
  out["part_map_head"] = _component(
    model.part_map_head, [features[:b]], model.part_map_head.trainable_variables, True, config
  )
  out["decoder"] = _component(
    model.decoder,
    [rng.normal([b + 3 * b * k, h, h, latent])],
    model.decoder.trainable_variables,
    True,
    config,
  )
  perceptual = model._perceptual_fn()
  if perceptual is not None:
    images = [rng.uniform([b, s, s, 3]) for _ in range(4)]

    def both_reconstructions(target, target_rec, source, source_rec):
      return perceptual(target, target_rec) + perceptual(source, source_rec)

    def perceptual_fn(target_rec, source_rec):
      return both_reconstructions(images[0], target_rec, images[2], source_rec)

    out["perceptual"] = _component(perceptual_fn, [images[1], images[3]], [], True, config)
  out["sum_forward_backward_ms"] = round(
    sum(v["forward_backward_ms"]["median"] for v in out.values()), 3
  )
  out["method"] = METHOD
  return out
