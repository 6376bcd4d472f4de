"""FLOP counts from a traced graph, and parameter counts.

Method: trace the computation into a concrete function (fixed input shapes), then sum the
floating-point operation counts that TensorFlow registers for each op type (`RegisterStatistics(
op, "flops")`: Conv2D and its two backprop ops, MatMul / BatchMatMul, BiasAdd, element-wise
arithmetic, reductions, pooling, Softmax ...). These are the numbers `tf.compat.v1.profiler` with
`ProfileOptionBuilder.float_operation()` reports, with one correction: the profiler counts every op
in the graph, including the gradient ops that nothing consumes (e.g. the filter gradients of the
frozen VGG-19, or the input gradient of the first conv), which TensorFlow prunes before running the
function. We count only the ops the function's outputs and side effects depend on (walking back
from its outputs and control outputs), and report the profiler's unpruned total next to it.

A FLOP is one multiply or one add (a conv's count is 2 x MACs). Ops without registered statistics
count zero: gathers of the warp, resizes, ReLU / tanh / exp, Einsum (the mask moments), so the
totals are conv + matmul dominated lower bounds.
"""

import collections

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.util import deprecation


def live_ops(graph):
  """Ops of `graph` that its outputs or control outputs (stateful updates) depend on."""
  roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
  seen, stack = set(), list(roots)
  live = []
  while stack:
    op = stack.pop()
    if op.name in seen:
      continue
    seen.add(op.name)
    live.append(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return live


def graph_flops(concrete_function):
  """Floating-point operations of one call of a concrete function.

  Args:
    concrete_function: a `tf.types.experimental.ConcreteFunction` traced with static shapes.

  Returns:
    dict: ``total`` (live ops), ``by_op`` {op type: flops} (descending, non-zero),
    ``unknown_shape_ops`` {op type: count} (ops with registered statistics whose shapes were not
    static, counted as zero), ``profiler_total_unpruned`` (tf.compat.v1.profiler's total).
  """
  graph = concrete_function.graph
  by_op = collections.Counter()
  unknown = collections.Counter()
  with deprecation.silence():  # the registered statistics use a deprecated shape helper
    for op in live_ops(graph):
      try:
        stats = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
      except ValueError:  # statistics registered, but a shape is not fully defined
        unknown[op.type] += 1
        continue
      if stats.value:
        by_op[op.type] += int(stats.value)
  return {
    "total": int(sum(by_op.values())),
    "by_op": dict(by_op.most_common()),
    "unknown_shape_ops": dict(unknown),
    "profiler_total_unpruned": profiler_flops(graph),
  }


def profiler_flops(graph):
  """`tf.compat.v1.profiler.profile(graph, float_operation())` total (all ops, dead ones too)."""
  profiler = tf.compat.v1.profiler
  options = profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  try:
    with deprecation.silence():
      return int(profiler.profile(graph, options=options).total_float_ops)
  except Exception:  # the profiler is a best-effort cross-check
    return None


def count_params(layer):
  """Number of scalars in a layer's weights (trainable or not)."""
  return int(sum(int(tf.size(w)) for w in layer.weights))


def model_params(model):
  """Parameter counts of a built `CoPartModel` by block.

  Returns:
    dict: encoder, part_map_head, transform_head, encoder_and_heads, decoder, total.
  """
  encoder = count_params(model.encoder)
  part_map = count_params(model.part_map_head)
  transform = count_params(model.transform_head)
  decoder = count_params(model.decoder)
  return {
    "encoder": encoder,
    "part_map_head": part_map,
    "transform_head": transform,
    "encoder_and_heads": encoder + part_map + transform,
    "decoder": decoder,
    "total": encoder + part_map + transform + decoder,
  }
