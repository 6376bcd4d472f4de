"""The library behind `python benchmarks/benchmark.py` (issue 9; benchmarks/README.md).

Not part of the shipped `copart_tf` package: it lives in the source tree next to the other
benchmarks and imports `copart_tf`, never the other way round.

Modules (imports go one way: `run` -> phases -> `harness` -> helpers):
- `config`: `BenchmarkConfig` (imports no TensorFlow).
- `run`: builds the model once and runs the requested phases on it; the JSON result.
- `harness`: model construction (`config_from_settings`, the trainer's mapping), synthetic
  inputs, FLOP counting, utilisation.
- `train`: training step, forward only, perceptual-loss and warp fractions; `components`: the
  per-block breakdown (`--breakdown`).
- `infer`: exported SavedModel (serving_default) and in-memory model latency / throughput.
- `serve`: wraps benchmarks/serving_latency.py (local gRPC server).
- `flops`, `matmul`, `machine`, `stats`, `reference`: FLOPs and parameters, the machine's matmul
  GFLOP/s, machine facts and peak memory, timing summaries, the PyTorch reference anchor.
"""
