"""Benchmarks training, inference and serving of one model configuration; prints JSON (issue 9).

  python benchmarks/benchmark.py --preset=small|paper|tiny --batch=N --what=train|infer|serve|all
      [--image_size=128] [--num_parts=10] [--steps=10] [--warmup=2]
      [--perceptual=random|pyramid|none] [--jit_compile]
      [--mixed_precision=float32|mixed_bfloat16|mixed_float16] [--compose_warps] [--breakdown]
      [--infer_batches=1,16] [--serve_seconds=5] [--serve_requests=30] [--output=result.json]

Every time is the median of `--steps` timed iterations after `--warmup` untimed ones, with p10 / p90
next to it. The JSON on stdout (progress goes to stderr) is described in benchmarks/README.md,
together with the reference comparison it prints (the authors' PyTorch code on this machine type).
Run it on a quiet machine: other processes change every number. The code is `benchmarks.perf`
(this tree, not the shipped package); the quality ladder is `python benchmarks/quality_ladder.py`.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from copart_tf import cli_env  # noqa: E402, F401 (TensorFlow's environment, before TF loads)

# isort: split
from absl import app, flags  # noqa: E402

from benchmarks.perf.config import BenchmarkConfig  # noqa: E402 (no TensorFlow)
from copart_tf.errors import ConfigError, CopartError  # noqa: E402

PRESET = flags.DEFINE_enum("preset", "small", ["tiny", "small", "paper"], "Architecture preset.")
BATCH = flags.DEFINE_integer("batch", 1, "Training batch (source/target pairs per step).")
WHAT = flags.DEFINE_enum("what", "all", ["train", "infer", "serve", "all"], "What to measure.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 128, "Model input side.")
NUM_PARTS = flags.DEFINE_integer("num_parts", 10, "K, foreground parts.")
STEPS = flags.DEFINE_integer("steps", 10, "Timed iterations of every measurement.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed iterations before them (tracing, XLA).")
PERCEPTUAL = flags.DEFINE_enum(
  "perceptual",
  "random",
  ["random", "pyramid", "none"],
  "Perceptual loss: VGG-19 with random weights (the paper loss' work), pyramid, or none.",
)
JIT_COMPILE = flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step.")
MIXED_PRECISION = flags.DEFINE_enum(
  "mixed_precision",
  "float32",
  ["float32", "mixed_bfloat16", "mixed_float16"],
  "Keras dtype policy while the model is built and run.",
)
COMPOSE_WARPS = flags.DEFINE_bool("compose_warps", False, "One composed warp per part map.")
BREAKDOWN = flags.DEFINE_bool(
  "breakdown", False, "Also time encoder, heads, decoder and perceptual loss alone (train)."
)
INFER_BATCHES = flags.DEFINE_list("infer_batches", ["1", "16"], "Inference batch sizes.")
SERVE_SECONDS = flags.DEFINE_float("serve_seconds", 5.0, "Concurrent-clients phase of serve.")
SERVE_REQUESTS = flags.DEFINE_integer("serve_requests", 30, "Sequential Predict calls timed.")
SERVE_CONCURRENCY = flags.DEFINE_integer("serve_concurrency", 8, "Concurrent client threads.")
MATMUL_SIZE = flags.DEFINE_integer(
  "matmul_size", 2048, "Side of the float32 matmul measuring the machine's GFLOP/s (0 = skip)."
)
PEAK_GFLOPS = flags.DEFINE_float(
  "peak_gflops", 0.0, "Use this matmul GFLOP/s for utilisation instead of measuring it."
)
SEED = flags.DEFINE_integer("seed", 0, "Weights and inputs.")
OUTPUT = flags.DEFINE_string("output", "", "Also write the JSON to this file.")


def config_from_flags():
  """The validated `BenchmarkConfig` of the flags (raises ConfigError; TensorFlow not loaded)."""
  try:
    infer_batches = tuple(int(b) for b in INFER_BATCHES.value)
  except ValueError:
    raise ConfigError(f"--infer_batches={','.join(INFER_BATCHES.value)}: integers") from None
  config = BenchmarkConfig(
    preset=PRESET.value,
    batch=BATCH.value,
    what=WHAT.value,
    image_size=IMAGE_SIZE.value,
    num_parts=NUM_PARTS.value,
    steps=STEPS.value,
    warmup=WARMUP.value,
    perceptual=PERCEPTUAL.value,
    jit_compile=JIT_COMPILE.value,
    mixed_precision=MIXED_PRECISION.value,
    compose_warps=COMPOSE_WARPS.value,
    breakdown=BREAKDOWN.value,
    infer_batches=infer_batches,
    serve_seconds=SERVE_SECONDS.value,
    serve_requests=SERVE_REQUESTS.value,
    serve_concurrency=SERVE_CONCURRENCY.value,
    matmul_size=MATMUL_SIZE.value,
    peak_gflops=PEAK_GFLOPS.value,
    seed=SEED.value,
  )
  config.validate()
  return config


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    if argv[1] == "quality":
      print("the quality ladder is `python benchmarks/quality_ladder.py`", file=sys.stderr)
    return 2

  def log(message):
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)

  try:
    config = config_from_flags()
    from benchmarks.perf import run as run_lib  # loads TensorFlow

    result = run_lib.run(config, log=log)
  except CopartError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  text = json.dumps(result, indent=2)
  if OUTPUT.value:
    with open(OUTPUT.value, "w") as f:
      f.write(text + "\n")
  print(text, flush=True)
  return 0


if __name__ == "__main__":
  app.run(main)
