"""Throughput of the training pair pipeline (`copart_tf.data.pipeline.make_pair_dataset`).

Reads `--warmup` batches, then times `--num_batches` batches and prints one JSON line with pairs/s
and the process's peak resident memory.

  python benchmarks/pipeline_throughput.py --data_dir=/path/to/root --batch_size=16 --image_size=128

With ``--synthetic=frames`` (or ``mp4``) it first writes a small random dataset into `--data_dir`
(``--synthetic_videos`` videos of ``--synthetic_frames`` frames of ``--synthetic_size`` pixels:
PNG frame folders, or one mp4 file per video) unless the folder already exists.
"""

import argparse
import atexit
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def make_synthetic(root, kind, num_videos, num_frames, size, seed=0):
  """Writes `num_videos` random-ish moving-texture videos to ``root/train``."""
  import imageio
  from PIL import Image

  rng = np.random.default_rng(seed)
  train = os.path.join(root, "train")
  os.makedirs(train, exist_ok=True)
  for v in range(num_videos):
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    frames = (np.roll(base, 3 * t, axis=1) for t in range(num_frames))
    if kind == "frames":
      folder = os.path.join(train, f"id{v % 5}#video{v:03d}.mp4")
      os.makedirs(folder, exist_ok=True)
      for t, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{t:07d}.png"))
    else:
      path = os.path.join(train, f"id{v % 5}#video{v:03d}.mp4")
      imageio.mimwrite(path, list(frames), fps=25, macro_block_size=1, quality=8)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--data_dir",
    default="",
    help="dataset root; empty = a temporary random dataset (implies --synthetic=frames)",
  )
  parser.add_argument("--split", default="train")
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--num_batches", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_augment", action="store_true")
  parser.add_argument("--id_sampling", action="store_true")
  parser.add_argument("--synthetic", choices=["frames", "mp4"], default=None)
  parser.add_argument("--synthetic_videos", type=int, default=20)
  parser.add_argument("--synthetic_frames", type=int, default=32)
  parser.add_argument("--synthetic_size", type=int, default=128)
  args = parser.parse_args(argv)
  if not args.data_dir:  # `make bench` runs every script without arguments
    args.data_dir = tempfile.mkdtemp(prefix="copart-pipeline-bench-")
    atexit.register(shutil.rmtree, args.data_dir, ignore_errors=True)
    args.synthetic = args.synthetic or "frames"

  if args.synthetic and not os.path.isdir(os.path.join(args.data_dir, "train")):
    make_synthetic(
      args.data_dir,
      args.synthetic,
      args.synthetic_videos,
      args.synthetic_frames,
      args.synthetic_size,
    )

  from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
  from copart_tf.data import pipeline

  start = time.perf_counter()
  ds = pipeline.make_pair_dataset(
    args.data_dir,
    args.split,
    args.image_size,
    args.batch_size,
    seed=args.seed,
    augment=not args.no_augment,
    id_sampling=args.id_sampling,
  )
  iterator = iter(ds)
  for _ in range(args.warmup):
    next(iterator)
  warm = time.perf_counter()
  for _ in range(args.num_batches):
    batch = next(iterator)
  elapsed = time.perf_counter() - warm
  assert batch["source"].shape == (args.batch_size, args.image_size, args.image_size, 3)
  pairs = args.num_batches * args.batch_size
  print(
    json.dumps(
      {
        "data_dir": args.data_dir,
        "split": args.split,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "augment": not args.no_augment,
        "num_batches": args.num_batches,
        "warmup_batches": args.warmup,
        "startup_seconds": round(warm - start, 3),
        "seconds": round(elapsed, 3),
        "pairs_per_second": round(pairs / elapsed, 1),
        "cpu_count": os.cpu_count(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      }
    )
  )


if __name__ == "__main__":
  main()
