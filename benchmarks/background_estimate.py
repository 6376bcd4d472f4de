r"""How well the plain-background estimates fit a dataset's background, with and without rotation.

  python benchmarks/background_estimate.py [--data_dir=data/humanoid] [--split=train]
      [--image_size=128] [--degrees=0,2.5,5,10] [--frames_per_video=2] [--json_out=PATH]

Why: with ``--warp_source_pixels`` the background layer starts from a plain-background estimate
(`copart_tf.model.copart_model._background_colours`: the frame's median colour, or each row's
with ``--background_colour=row_median``), and the content terms (matting, seek, claims) count
every pixel far from it as something a part must hold. The training augmentation rotates both
frames of a pair by up to ``--augment_rotation_deg`` (10, the reference's); a rotated horizon is
no longer one colour per row. This script measures, on labelled frames of a dataset
(`copart_tf.data.pipeline.iterate_eval_frames`), each frame rotated by +-d degrees exactly as the
augmentation does (`copart_tf.data.augment.rotate_images`, bilinear, reflect fill; the labels'
foreground rotated with it):

- ``stray / figure``: background pixels whose mean per-channel distance from the estimate is
  above half of `MATTING_CONTRAST` (where the matting term's log-odds cross 0: the pixel counts
  as content), per figure pixel. 0 = every part's job is the figure; 1 = the background hands
  the parts as much stray content as the figure itself.
- ``figure seen``: the share of figure pixels that are that far from the estimate.

One row per estimate and angle on stdout; ``--json_out`` keeps them. Measured on data/humanoid
(docs/EXPERIMENTS.md section 19).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# isort: off
from copart_tf import cli_env  # noqa: E402, F401 (TensorFlow's environment, before TF loads)
import tensorflow as tf  # noqa: E402
# isort: on

from copart_tf.data import augment, pipeline  # noqa: E402
from copart_tf.errors import DataError  # noqa: E402
from copart_tf.model import copart_model  # noqa: E402

# Where `_matting_depth`'s log-odds cross 0 for a shaded object: half the contrast.
CONTENT_DISTANCE = copart_model.MATTING_CONTRAST / 2


def load_frames(data_dir, split, image_size, frames_per_video):
  """Images `[N, S, S, 3]` float32 in [0, 1] and foreground masks `[N, S, S]` bool."""
  images, foreground = [], []
  for frame in pipeline.iterate_eval_frames(data_dir, split, image_size, frames_per_video):
    if frame["parts"] is None:
      continue
    images.append(frame["image"].astype(np.float32) / 255.0)
    foreground.append(frame["parts"] > 0)
  if not images:
    raise DataError(f"{data_dir}: no {split} frame has part labels")
  return np.stack(images), np.stack(foreground)


def stray_content(images, foreground, degrees, mode):
  """(stray background pixels per figure pixel, share of figure pixels seen) at +-degrees.

  Half the frames are rotated by +degrees, half by -degrees (the augmentation's draw is
  symmetric); image and foreground go through the same warp.
  """
  stray = figure = seen = 0.0
  for i in range(len(images)):
    sign = 1.0 if i % 2 == 0 else -1.0
    stacked = np.concatenate([images[i], foreground[i][..., None].astype(np.float32)], -1)
    if degrees:
      angle = tf.constant(sign * math.radians(degrees), tf.float32)
      stacked = augment.rotate_images(stacked[None], angle).numpy()[0]
    image, fg = stacked[..., :3], stacked[..., 3] > 0.5
    estimate = copart_model._background_colours(tf.constant(image[None]), mode).numpy()[0]
    far = np.abs(image - estimate).mean(-1) > CONTENT_DISTANCE
    stray += float((far & ~fg).sum())
    figure += float(fg.sum())
    seen += float((far & fg).sum())
  return stray / max(figure, 1.0), seen / max(figure, 1.0)


def run(args):
  start = time.time()
  images, foreground = load_frames(
    args.data_dir, args.split, args.image_size, args.frames_per_video or None
  )
  rows = []
  for mode in copart_model.BACKGROUND_COLOURS:
    for degrees in args.degrees:
      stray, seen = stray_content(images, foreground, degrees, mode)
      rows.append(
        {"estimate": mode, "degrees": degrees, "stray_per_figure": stray, "figure_seen": seen}
      )
  return {
    "data_dir": args.data_dir,
    "split": args.split,
    "frames": len(images),
    "image_size": args.image_size,
    "content_distance": CONTENT_DISTANCE,
    "rows": rows,
    "seconds": round(time.time() - start, 1),
  }


def format_table(results):
  lines = [
    f"{results['frames']} {results['split']} frames of {results['data_dir']} at "
    f"{results['image_size']} px; content = mean distance > {results['content_distance']:.2f}",
    f"{'estimate':<14}| {'rotation':>8} | {'stray / figure':>14} | {'figure seen':>11}",
  ]
  for row in results["rows"]:
    lines.append(
      f"{row['estimate']:<14}| {row['degrees']:>6g} d | {row['stray_per_figure']:>14.3f} | "
      f"{row['figure_seen']:>11.3f}"
    )
  return "\n".join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=os.path.join(ROOT, "data", "humanoid"))
  parser.add_argument("--split", default="train", choices=("train", "test"))
  parser.add_argument("--image_size", type=int, default=128, help="Frames are resized to this.")
  parser.add_argument(
    "--degrees",
    default="0,2.5,5,10",
    type=lambda s: [float(v) for v in s.split(",")],
    help="Rotations to measure (the augmentation draws U(-10, 10)).",
  )
  parser.add_argument(
    "--frames_per_video", type=int, default=2, help="Labelled frames per video (0 = all)."
  )
  parser.add_argument("--json_out", default=None)
  args = parser.parse_args(argv)
  if not os.path.isdir(args.data_dir):
    parser.error(f"--data_dir={args.data_dir}: no such directory (make demo generates it)")
  return args


def main(argv=None):
  args = parse_args(argv)
  try:
    results = run(args)
  except DataError as e:
    sys.exit(f"error: {e}")
  print(format_table(results))
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
