"""Benchmark harness behind `python -m copart_tf.benchmark` (issue 9; benchmarks/README.md).

Modules:
- `config`: `BenchmarkConfig` (imports no TensorFlow).
- `harness`: model construction (trainer-like), FLOP counting, `run`.
- `train`: training step, forward only, perceptual-loss and warp fractions.
- `infer`: exported SavedModel (serving_default) and in-memory model latency / throughput.
- `serve`: wraps benchmarks/serving_latency.py (local gRPC server).
- `flops`, `matmul`, `machine`, `stats`, `reference`: FLOPs and parameters, the machine's matmul
  GFLOP/s, machine facts and peak memory, timing summaries, the PyTorch reference anchor.
"""
