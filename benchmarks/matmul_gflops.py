"""The machine's dense matmul rate with TensorFlow (GFLOP/s), the denominator of "utilisation".

Times ``A @ B`` for random `--size` x `--size` matrices inside a tf.function (``2 size^3`` FLOPs
per call) and prints one JSON object: the median and best GFLOP/s over `--steps` timed calls.

  python benchmarks/matmul_gflops.py                      # 2048^2 float32
  python benchmarks/matmul_gflops.py --size=4096 --steps=5

`python benchmarks/benchmark.py` runs the same measurement (`benchmarks/perf/matmul.py`) unless
given `--peak_gflops`. Like the benchmark, it imports copart_tf.cli_env first so TensorFlow starts with
the project's oneDNN setting (TF_ENABLE_ONEDNN_OPTS=1).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=2048, help="Matrix side.")
  parser.add_argument("--steps", type=int, default=10, help="Timed calls.")
  parser.add_argument("--warmup", type=int, default=2, help="Untimed calls first.")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
  args = parser.parse_args(argv)

  from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)

  # isort: split
  from benchmarks.perf import machine, matmul

  result = matmul.matmul_gflops(args.size, args.steps, args.warmup, args.dtype)
  facts = machine.machine_facts()
  result.update(
    {
      key: facts[key]
      for key in ("cpu_model", "usable_cores", "tensorflow", "TF_ENABLE_ONEDNN_OPTS", "date")
    }
  )
  result["load_average_1m"] = machine.load_average_1m()
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
