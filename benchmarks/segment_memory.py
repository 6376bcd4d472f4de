"""Peak memory and speed of `copart_tf.segment` on long videos: memory must not grow with length.

For each length in --lengths, writes a synthetic moving-shapes mp4 (`tests/app_fixtures.py`),
then segments it in a FRESH Python process (so each peak is its own) with the same code as
``python -m copart_tf.segment`` (overlay.mp4 + tracks.json/csv, part axes on), and prints one JSON
object: per length the process's peak resident memory (VmHWM from /proc/self/status), its
resident memory after loading the model (before the first frame), wall time and frames/s, and
the growth of the peak between the shortest and the longest video. (The ffmpeg encoder is a
separate process, streaming, not counted.)

  python benchmarks/segment_memory.py                       # tiny random model, 200 and 2000 frames
  python benchmarks/segment_memory.py --model=exports/copart --size=128 --lengths=200,2000

Without --model a tiny randomly initialised model (K=4) is written into the work dir: the numbers
then measure the pipeline (decode, model call, overlay, encode, tracks), not a trained network.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def child(args):
  """Segments one video and prints a JSON line (runs in its own process)."""
  from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)

  # isort: split
  from benchmarks.perf import machine
  from copart_tf.apps import segmentation
  from copart_tf.inference import Segmenter

  t0 = time.time()
  segmenter = Segmenter.load(args.model, batch_size=args.batch_size)
  rss_after_load_mb = machine.current_rss_mb()
  load_seconds = time.time() - t0
  options = segmentation.SegmentOptions(
    axes=True, batch_size=args.batch_size, show_progress=False, gif=args.gif
  )
  result = segmentation.segment_video(segmenter, args.input, args.output, options)
  self_usage = resource.getrusage(resource.RUSAGE_SELF)
  print(
    json.dumps(
      {
        "frames": result["num_frames"],
        "peak_rss_mb": machine.peak_rss_mb(),
        "ru_maxrss_mb": round(self_usage.ru_maxrss / 1024, 1),
        "rss_after_model_load_mb": rss_after_load_mb,
        "model_load_seconds": round(load_seconds, 2),
        "segment_seconds": round(result["seconds"], 2),
        "frames_per_second": round(result["frames_per_second"], 1),
        "tracks_json_mb": round(os.path.getsize(result["files"]["tracks_json"]) / 2**20, 2),
        "overlay_mp4_mb": round(os.path.getsize(result["files"]["video"]) / 2**20, 2),
      }
    )
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default=None, help="SavedModel or run dir (default: tiny model).")
  parser.add_argument("--lengths", default="200,2000", help="Comma-separated frame counts.")
  parser.add_argument("--size", type=int, default=64, help="Frame side of the synthetic videos.")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--gif", action="store_true", help="Also write overlay.gif.")
  parser.add_argument("--workdir", default=None, help="Scratch folder (default: a temp dir).")
  parser.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--input", help=argparse.SUPPRESS)
  parser.add_argument("--output", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args)
    return 0

  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import app_fixtures  # tests/app_fixtures.py: the tiny run dir and the synthetic videos

  work = args.workdir or tempfile.mkdtemp(prefix="copart_segment_memory_")
  os.makedirs(work, exist_ok=True)
  try:
    model = args.model
    if model is None:
      model = os.path.join(work, "tiny_run")
      app_fixtures.make_tiny_run_dir(model, num_parts=4, image_size=64)
    runs = []
    for length in sorted(int(n) for n in args.lengths.split(",")):
      video = os.path.join(work, f"shapes_{length}.mp4")
      app_fixtures.write_moving_shapes_video(video, length, size=args.size)
      command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"--model={model}",
        f"--input={video}",
        f"--output={os.path.join(work, f'out_{length}')}",
        f"--batch_size={args.batch_size}",
      ] + (["--gif"] if args.gif else [])
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
      done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
      if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
      runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
      print(json.dumps(runs[-1]), file=sys.stderr)
    summary = {
      "model": model if args.model else "tiny random model (K=4, 64x64), written by the benchmark",
      "frame_size": args.size,
      "batch_size": args.batch_size,
      "runs": runs,
      "peak_rss_growth_mb": round(runs[-1]["peak_rss_mb"] - runs[0]["peak_rss_mb"], 1),
    }
    print(json.dumps(summary, indent=2))
  finally:
    if not args.keep:
      shutil.rmtree(work, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
