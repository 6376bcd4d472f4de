"""`BenchmarkConfig`: what to measure and on which model (no TensorFlow import: flags are checked
before TensorFlow loads)."""

import dataclasses

from copart_tf.errors import ConfigError
from copart_tf.model.presets import PRESETS

WHAT = ("train", "infer", "serve", "all")
PERCEPTUAL = ("random", "pyramid", "none")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class BenchmarkConfig:
  """What to measure and on which model (mirrors `python benchmarks/benchmark.py`'s flags).

  Attributes:
    preset: "tiny", "small" or "paper".
    batch: training batch (source/target pairs per step).
    what: "train", "infer", "serve" or "all".
    image_size: model input side.
    num_parts: K.
    steps: timed iterations of every measurement.
    warmup: untimed iterations before them.
    perceptual: "random" (VGG-19 with random weights: the paper loss' work), "pyramid" or "none".
    jit_compile: XLA for the training step (and the in-memory inference function).
    mixed_precision: Keras dtype policy while the model is built and run.
    compose_warps: the model's one-warp path (DESIGN.md §3).
    breakdown: also time each block of the step alone (`benchmarks.perf.components`).
    infer_batches: batch sizes of the inference measurements.
    serve_seconds: duration of the concurrent-clients phase of `serve`.
    serve_requests: sequential Predict calls timed by `serve`.
    serve_concurrency: client threads of the throughput phase.
    matmul_size: side of the matmul measuring the machine's GFLOP/s (0 = skip).
    peak_gflops: use this GFLOP/s instead of measuring (0 = measure).
    seed: weights and inputs.
  """

  preset: str = "small"
  batch: int = 1
  what: str = "all"
  image_size: int = 128
  num_parts: int = 10
  steps: int = 10
  warmup: int = 2
  perceptual: str = "random"
  jit_compile: bool = False
  mixed_precision: str = "float32"
  compose_warps: bool = False
  breakdown: bool = False
  infer_batches: tuple = (1, 16)
  serve_seconds: float = 5.0
  serve_requests: int = 30
  serve_concurrency: int = 8
  matmul_size: int = 2048
  peak_gflops: float = 0.0
  seed: int = 0

  def validate(self):
    """Raises ConfigError naming the first bad flag."""
    checks = [
      (self.preset in PRESETS, f"--preset={self.preset!r}: one of {', '.join(sorted(PRESETS))}"),
      (self.what in WHAT, f"--what={self.what!r}: one of {', '.join(WHAT)}"),
      (self.perceptual in PERCEPTUAL, f"--perceptual={self.perceptual!r}: random|pyramid|none"),
      (
        self.mixed_precision in PRECISIONS,
        f"--mixed_precision={self.mixed_precision!r}: one of {', '.join(PRECISIONS)}",
      ),
      (self.batch >= 1, f"--batch={self.batch}: must be >= 1"),
      (self.steps >= 1, f"--steps={self.steps}: must be >= 1"),
      (self.warmup >= 0, f"--warmup={self.warmup}: must be >= 0"),
      (self.num_parts >= 1, f"--num_parts={self.num_parts}: must be >= 1"),
      (
        self.image_size >= 32 and self.image_size % 4 == 0,
        f"--image_size={self.image_size}: a multiple of 4, at least 32",
      ),
      (
        len(self.infer_batches) > 0 and all(b >= 1 for b in self.infer_batches),
        f"--infer_batches={self.infer_batches}: positive integers",
      ),
      (self.serve_seconds > 0, f"--serve_seconds={self.serve_seconds}: must be > 0"),
      (self.serve_requests >= 1, f"--serve_requests={self.serve_requests}: must be >= 1"),
      (self.matmul_size >= 0, f"--matmul_size={self.matmul_size}: must be >= 0"),
    ]
    for ok, message in checks:
      if not ok:
        raise ConfigError(message)

  def phases(self):
    return ("train", "infer", "serve") if self.what == "all" else (self.what,)

  def to_dict(self):
    out = dataclasses.asdict(self)
    out["infer_batches"] = list(self.infer_batches)
    return out
