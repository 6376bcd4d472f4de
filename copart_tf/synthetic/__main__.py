r"""Command line of the synthetic dataset generator (`copart_tf.synthetic.dataset`)::

  python -m copart_tf.synthetic --body=humanoid_mocap --out=data/humanoid \
      --train_videos=40 --test_videos=10 --frames=64 --size=128 --seed=0

``--body=sprites`` / ``--body=figure2d`` make the numpy-only ladder datasets (no pybullet); they
also have CLIs of their own (``python -m copart_tf.synthetic.sprites``, ``... .figure2d``).
"""

import json
import sys

from copart_tf.errors import CopartError
from copart_tf.synthetic.appearance import BACKGROUNDS
from copart_tf.synthetic.dataset import DATASET_NAMES, resolve_clips, synthesize_dataset


def _define_flags():
  from absl import flags

  flags.DEFINE_enum(
    "body",
    "humanoid_mocap",
    list(DATASET_NAMES),
    "Body to render, or a numpy-only dataset (sprites, figure2d: no pybullet; only --out, the "
    "counts, --frames, --size, --seed, --supersample, --contact_sheet and --overwrite apply).",
  )
  flags.DEFINE_string("out", None, "Output dataset root (must not exist or be empty).")
  flags.DEFINE_integer("train_videos", 40, "Number of training videos.")
  flags.DEFINE_integer("test_videos", 10, "Number of test videos.")
  flags.DEFINE_integer("frames", 64, "Frames per video.")
  flags.DEFINE_integer("size", 128, "Frame size in pixels (square).")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives identical files.")
  flags.DEFINE_float("fps", 30.0, "Frame rate at which the motion is sampled.")
  flags.DEFINE_integer(
    "supersample",
    None,
    "Render at this multiple of --size and downsample (default 2; 4 for sprites/figure2d).",
  )
  flags.DEFINE_boolean("contact_sheet", True, "Write root/contact_sheet.png.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing --out folder.")
  flags.DEFINE_enum("background", "mixed", list(BACKGROUNDS), "Floor style.")
  flags.DEFINE_list(
    "clips", [], "Motion clips to draw from (default all; 'upright' = the standing humanoid clips)."
  )
  return flags.FLAGS


def main(argv):
  """absl entry point."""
  del argv
  from absl import flags

  FLAGS = flags.FLAGS
  if not FLAGS.out:
    print("error: --out is required", file=sys.stderr)
    sys.exit(2)
  last = [-1.0]

  def progress(done, total):
    pct = 100.0 * done / total
    if done == total or pct - last[0] >= 5.0:
      last[0] = pct
      print(f"synthesize: {done}/{total} frames ({pct:.0f}%)", flush=True)

  try:
    summary = synthesize_dataset(
      FLAGS.body,
      FLAGS.out,
      FLAGS.train_videos,
      FLAGS.test_videos,
      FLAGS.frames,
      size=FLAGS.size,
      seed=FLAGS.seed,
      progress=progress,
      fps=FLAGS.fps,
      supersample=FLAGS.supersample,
      contact_sheet=FLAGS.contact_sheet,
      overwrite=FLAGS.overwrite,
      background=FLAGS.background,
      clips=resolve_clips(FLAGS.clips),
    )
  except CopartError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(main)
