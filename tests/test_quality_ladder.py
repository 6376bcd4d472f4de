"""benchmarks/quality_ladder.py: bars, shift-error matching (hand-made arrays) and one end-to-end run.

The end-to-end test runs ``python benchmarks/quality_ladder.py`` on one rung with a tiny flagfile
(tiny preset, 64 px, 5 steps, no export) and a tiny sprites dataset in a temporary folder, plus one
rung whose flagfile does not exist; about 40 s on a 2-core machine.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import benchmark_scripts
import numpy as np

from copart_tf.synthetic import sprites

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420  # the machine is shared with long trainings
SIZE = 64


ladder = benchmark_scripts.load("quality_ladder")


def passing_metrics():
  return {
    "train_seconds": 100.0,
    "fg_iou": 0.97,
    "part_iou_majority": 0.9,
    "part_iou_hungarian": 0.9,
    "landmark_mae": 100.0,
    "kmeans_part_iou_majority": 0.3,
    "kmeans_landmark_mae": 200.0,
    "model_l1": 0.01,
    "copy_source_l1": 0.05,
    "shift_error_px": 1.0,
  }


class BarTest(unittest.TestCase):
  def test_every_rung_passes_with_good_numbers(self):
    for rung in ladder.RUNGS:
      bar = ladder.evaluate_bar(rung, passing_metrics())
      self.assertEqual([c["verdict"] for c in bar], ["PASS"] * len(ladder.BARS[rung]), rung)
      self.assertEqual(ladder.overall_verdict(bar), "PASS")

  def test_thresholds_of_rung_a(self):
    metrics = passing_metrics()
    metrics.update(shift_error_px=2.5, train_seconds=301.0, fg_iou=0.95)
    verdicts = {c["metric"]: c["verdict"] for c in ladder.evaluate_bar("A", metrics)}
    self.assertEqual(
      verdicts,
      {
        "fg_iou": "PASS",  # >= is inclusive
        "part_iou_hungarian": "PASS",
        "shift_error_px": "FAIL",
        "train_seconds": "FAIL",
      },
    )
    self.assertEqual(ladder.overall_verdict(ladder.evaluate_bar("A", metrics)), "FAIL")

  def test_comparisons_with_kmeans(self):
    metrics = passing_metrics()
    metrics.update(part_iou_majority=0.6, kmeans_part_iou_majority=0.6, landmark_mae=150.0)
    bar = {c["criterion"]: c for c in ladder.evaluate_bar("B", metrics)}
    self.assertEqual(bar["part IoU (maj) >= 0.55"]["verdict"], "PASS")
    self.assertEqual(bar["part IoU > k-means"]["verdict"], "FAIL")  # strictly better
    self.assertEqual(bar["part IoU > k-means"]["reference_value"], 0.6)
    self.assertEqual(bar["landmark MAE < k-means"]["verdict"], "PASS")
    metrics["kmeans_landmark_mae"] = None  # not measurable: not demonstrated
    bar = {c["criterion"]: c["verdict"] for c in ladder.evaluate_bar("C", metrics)}
    self.assertEqual(bar["landmark MAE < k-means"], "FAIL")

  def test_missing_numbers_fail_and_rungs_not_run_are_na(self):
    bar = ladder.evaluate_bar("D", {"fg_iou": float("nan")})
    self.assertEqual({c["verdict"] for c in bar}, {"FAIL"})
    bar = ladder.not_run_bar("D")
    self.assertEqual({c["verdict"] for c in bar}, {"n/a"})
    self.assertEqual(ladder.overall_verdict(bar), "n/a")


class ShiftErrorTest(unittest.TestCase):
  def setUp(self):
    rng = np.random.default_rng(0)
    frames = 6
    # Three sprites far apart (spacing 1.2 normalised units), moving a little.
    base = np.array([[-0.6, -0.6], [0.6, -0.6], [0.0, 0.6]])
    self.true = base[None] + rng.uniform(-0.05, 0.05, (frames, 3, 2))
    self.visible = np.ones((frames, 3), bool)

  def test_prediction_equal_to_truth_is_zero(self):
    out = ladder.shift_error(self.true, self.true, self.visible, (SIZE, SIZE))
    self.assertAlmostEqual(out["error_px"], 0.0)
    self.assertEqual(out["assignment"], {0: 0, 1: 1, 2: 2})
    self.assertEqual(out["num_observations"], 18)

  def test_permuted_parts_are_matched(self):
    pred = self.true[:, [2, 0, 1]]
    out = ladder.shift_error(pred, self.true, self.visible, (SIZE, SIZE))
    self.assertAlmostEqual(out["error_px"], 0.0)
    self.assertEqual(out["assignment"], {0: 1, 1: 2, 2: 0})  # true sprite -> learned part

  def test_one_normalised_unit_is_half_the_frame(self):
    pred = self.true[:, [1, 2, 0]] + np.array([1.0, 0.0])
    pred = pred[:, [2, 0, 1]]  # permuted as well
    out = ladder.shift_error(pred, self.true, self.visible, (SIZE, SIZE))
    self.assertAlmostEqual(out["error_px"], 32.0)
    # Along y it scales with the height.
    pred = self.true + np.array([0.0, 0.5])
    self.assertAlmostEqual(
      ladder.shift_error(pred, self.true, self.visible, (32, 64))["error_px"], 8
    )

  def test_extra_parts_and_invisible_sprites(self):
    pred = np.concatenate([self.true, np.full((6, 1, 2), 5.0)], axis=1)  # K = 4 > P = 3
    visible = self.visible.copy()
    visible[:, 1] = False  # never visible: left out of the matching
    true = self.true.copy()
    true[:, 1] = 9.0  # would be far from everything
    out = ladder.shift_error(pred, true, visible, (SIZE, SIZE))
    self.assertAlmostEqual(out["error_px"], 0.0)
    self.assertEqual(sorted(out["assignment"]), [0, 2])
    self.assertEqual(out["num_observations"], 12)
    # More visible sprites than learned parts: the remaining sprite is unmatched.
    out = ladder.shift_error(self.true[:, :2], self.true, self.visible, (SIZE, SIZE))
    self.assertAlmostEqual(out["error_px"], 0.0)
    self.assertEqual(out["num_unmatched_observations"], 6)

  def test_one_matching_per_video(self):
    pred = self.true.copy()
    pred[3:] = pred[3:, [1, 2, 0]]  # the second video's parts follow other sprites
    videos = ["a"] * 3 + ["b"] * 3
    per_video = ladder.shift_error(pred, self.true, self.visible, (SIZE, SIZE), groups=videos)
    self.assertAlmostEqual(per_video["error_px"], 0.0)
    self.assertGreater(
      ladder.shift_error(pred, self.true, self.visible, (SIZE, SIZE))["error_px"], 10
    )

  def test_pairs(self):
    self.assertEqual(ladder.pair_indices(32, 8), [(0, 8), (0, 16), (0, 24)])
    self.assertEqual(ladder.pair_indices(8, 8), [(0, 7)])
    self.assertEqual(ladder.pair_indices(1, 8), [])


class FlagfileTest(unittest.TestCase):
  def test_later_flags_win_and_nested_files(self):
    with tempfile.TemporaryDirectory() as tmp:
      inner = os.path.join(tmp, "inner.cfg")
      with open(inner, "w") as f:
        f.write("--data_dir=data/inner\n--train_steps=7\n")
      outer = os.path.join(tmp, "outer.cfg")
      with open(outer, "w") as f:
        f.write(f"# comment --data_dir=no\n--flagfile={inner}\n--train_steps=9\n--compose_warps\n")
      values = ladder.read_flagfile(outer)
      self.assertEqual(
        values, {"data_dir": "data/inner", "train_steps": "9", "compose_warps": "true"}
      )
      values = ladder._apply_overrides(values, ["--train_steps=3", "--nocompose_warps"])
      self.assertEqual(values["train_steps"], "3")
      self.assertEqual(values["compose_warps"], "false")


TINY_FLAGFILE = """\
# Tiny rung for tests/test_quality_ladder.py.
--data_dir={data_dir}
--preset=tiny
--num_parts=4
--image_size=64
--batch_size=2
--train_steps=50
--vgg_weights=none
--perceptual_fallback=pyramid
--checkpoint_every=5
--log_every=5
--image_every=5
--eval_fit_frames_per_video=4
"""


class EndToEndTest(unittest.TestCase):
  def test_one_rung(self):
    with tempfile.TemporaryDirectory(prefix="quality_ladder_test-") as tmp:
      data_dir = os.path.join(tmp, "sprites")
      sprites.synthesize_sprites_dataset(
        data_dir, train_videos=4, test_videos=2, frames=8, size=SIZE, seed=0
      )
      config = os.path.join(tmp, "tiny.cfg")
      with open(config, "w") as f:
        f.write(TINY_FLAGFILE.format(data_dir=data_dir))
      work_dir = os.path.join(tmp, "runs")
      json_out = os.path.join(tmp, "ladder.json")
      env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
      proc = subprocess.run(
        [
          sys.executable,
          os.path.join(ROOT, "benchmarks", "quality_ladder.py"),
          "--rungs=A,B",
          f"--config=A={config}",
          f"--config=B={os.path.join(tmp, 'no_such.cfg')}",
          f"--work_dir={work_dir}",
          "--train_steps=5",  # overrides the flagfile's 50
          f"--json_out={json_out}",
          "--skip_export",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
      )
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      lines = proc.stdout.splitlines()
      header = [c.strip() for c in lines[0].split(" | ")]
      self.assertEqual(header, [h for _, h in ladder.COLUMNS])
      row_a = dict(zip(header, [c.strip() for c in lines[2].split(" | ")], strict=True))
      row_b = dict(zip(header, [c.strip() for c in lines[3].split(" | ")], strict=True))
      self.assertEqual(row_a["rung"], "A")
      self.assertEqual(row_a["steps"], "5")
      for key, title in ladder.COLUMNS:
        if key in ladder.METRIC_KEYS:
          self.assertRegex(row_a[title], r"^\d", title)  # a number, not "-"
      for criterion in ladder.BARS["A"]:
        self.assertRegex(row_a["bar"], re.escape(criterion["label"]) + " (PASS|FAIL)")
      self.assertIn(row_a["verdict"], ("PASS", "FAIL"))
      self.assertEqual(row_b["verdict"], "n/a (missing config)")
      self.assertEqual(row_b["shift err px"], "n/a")

      with open(json_out) as f:
        results = json.load(f)
      rung_a, rung_b = results["rungs"]
      self.assertEqual(rung_a["status"], "ok")
      self.assertEqual(rung_a["steps"], 5)
      self.assertEqual(sorted(rung_a["metrics"]), sorted(ladder.METRIC_KEYS))
      for key, value in rung_a["metrics"].items():
        self.assertIsInstance(value, float, key)
      self.assertGreaterEqual(rung_a["metrics"]["fg_iou"], 0.0)
      self.assertLessEqual(rung_a["metrics"]["fg_iou"], 1.0)
      self.assertGreater(rung_a["metrics"]["copy_source_l1"], 0.0)
      self.assertEqual(rung_a["num_test_pairs"], 2)  # 2 videos x (0, 7)
      self.assertEqual(
        [c["criterion"] for c in rung_a["bar"]], [c["label"] for c in ladder.BARS["A"]]
      )
      for criterion in rung_a["bar"]:
        self.assertIn(criterion["verdict"], ("PASS", "FAIL"))
      self.assertEqual(rung_b["status"], "missing config")
      self.assertEqual({c["verdict"] for c in rung_b["bar"]}, {"n/a"})
      for name in ("overlay.png", "train.log", "eval/report.md", "model/config.json"):
        self.assertTrue(os.path.exists(os.path.join(work_dir, "A", name)), name)
      self.assertFalse(os.path.exists(os.path.join(work_dir, "A", "export")))
      with open(os.path.join(work_dir, "A", "train.log")) as f:
        self.assertIn("--train_steps=5", f.read())


if __name__ == "__main__":
  unittest.main()
