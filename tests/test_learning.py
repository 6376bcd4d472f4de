"""The model learns parts (issue 17 §5): a short training from scratch must segment sprites.

Every other test would stay green if the model learned nothing; this one trains
`configs/sprites.cfg`'s recipe (through the training CLI, the command users run) on a small
freshly generated sprites dataset for a few hundred steps with fixed seeds, segments held-out
frames with the trained checkpoint, and asserts that the shapes are found (foreground IoU) and that
each shape's pixels mostly land in one part. Before `--warp_source_pixels`, `--initial_scale` and
the prior's stop-gradient, every such run ended with all masks on the background (fg IoU 0.000).
About 2 min on a 2-core machine.

Scope, measured 2026-12-05: single-shape videos with K = 1, fg IoU 0.721 (the same on every run
since the initial weights come from --seed; tests/test_reproducible.py). With K = 4 the same data gives fg IoU 0.59 but the shape is
split among parts (purity 0.41), and rung A (1-4 shapes, K = 4) still fails: see
docs/EXPERIMENTS.md. Environment knobs for experiments (defaults = the CI test):
COPART_LEARNING_STEPS, COPART_LEARNING_SHAPES (max shapes per video), COPART_LEARNING_PARTS (K),
COPART_LEARNING_IDENTITY (the sprites generator's identity: random, the default, or fixed),
COPART_LEARNING_FLAGS (extra training flags, space-separated), COPART_LEARNING_KEEP (copy the data
and the trained model to this folder to look at them).
"""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from copart_tf.data import ground_truth, sprites, video_io
from copart_tf.evaluation import metrics
from copart_tf.inference import Segmenter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "sprites.cfg")
STEPS = int(os.environ.get("COPART_LEARNING_STEPS", 300))
MAX_SHAPES = int(os.environ.get("COPART_LEARNING_SHAPES", 1))
NUM_PARTS = int(os.environ.get("COPART_LEARNING_PARTS", 1))
# "random": any kind and colour of shape per video (harder for K = 1 than sprite_1, always a red
# ellipse, of the fixed-identity data).
IDENTITY = os.environ.get("COPART_LEARNING_IDENTITY", "random")
EXTRA_FLAGS = os.environ.get("COPART_LEARNING_FLAGS", "").split()
MIN_FOREGROUND_IOU = 0.6
MIN_PART_PURITY = 0.8


def _majority_purity(pred, gt):
  """Mean over the true shapes of the share of their pixels that fall in their most common part."""
  shares = []
  for ident in np.unique(gt[gt > 0]):
    inside = pred[gt == ident]
    inside = inside[inside > 0]
    if inside.size:
      shares.append(np.bincount(inside).max() / float((gt == ident).sum()))
    else:
      shares.append(0.0)
  return float(np.mean(shares)) if shares else 1.0


class LearningTest(tf.test.TestCase):
  def test_sprites_recipe_learns_parts(self):
    if not os.path.isfile(CONFIG):
      pytest.skip(f"{CONFIG} is not here (not a source checkout)")
    with tempfile.TemporaryDirectory() as tmp:
      data = os.path.join(tmp, "data")
      sprites.synthesize_sprites_dataset(
        data,
        train_videos=60,
        test_videos=6,
        frames=16,
        seed=3,
        contact_sheet=False,
        max_shapes=MAX_SHAPES,
        identity=IDENTITY,
      )
      model_dir = os.path.join(tmp, "model")
      command = [
        sys.executable,
        "-m",
        "copart_tf.train",
        f"--flagfile={CONFIG}",
        f"--data_dir={data}",
        f"--model_dir={model_dir}",
        "--export_dir=",
        "--synthesize_if_missing=",
        f"--train_steps={STEPS}",
        "--evaluate_at_end=false",
        "--seed=0",
        f"--num_parts={NUM_PARTS}",
      ] + EXTRA_FLAGS
      result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
      )
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])

      segmenter = Segmenter.load(model_dir)
      ious, purities, areas = [], [], []
      test_root = os.path.join(data, "test")
      for name in sorted(os.listdir(test_root)):
        video = os.path.join(test_root, name)
        if not os.path.isdir(video):
          continue
        frames = np.stack([video_io.read_image(f) for f in video_io.list_frame_files(video)])
        truth = ground_truth.read_ground_truth(os.path.join(data, "labels", "test", name + ".npz"))
        pred = segmenter.segment(frames)["part_labels"]
        for p, g in zip(pred, truth["parts"], strict=True):
          ious.append(metrics.foreground_iou(p, g))
          purities.append(_majority_purity(p, g))
          areas.append(((p > 0).mean(), (g > 0).mean()))
      foreground_iou, purity = float(np.mean(ious)), float(np.mean(purities))
      area_pred, area_true = np.mean(areas, axis=0)
      print(
        f"learning test: fg IoU {foreground_iou:.3f}, part purity {purity:.3f}, "
        f"foreground {area_pred:.3f} of the pixels (true {area_true:.3f})"
      )
      if os.environ.get("COPART_LEARNING_KEEP"):
        shutil.rmtree(os.environ["COPART_LEARNING_KEEP"], ignore_errors=True)
        shutil.copytree(tmp, os.environ["COPART_LEARNING_KEEP"])
      self.assertGreaterEqual(foreground_iou, MIN_FOREGROUND_IOU)
      self.assertGreaterEqual(purity, MIN_PART_PURITY)


if __name__ == "__main__":
  tf.test.main()
