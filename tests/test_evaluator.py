"""Evaluator end to end on synthetic records, and the report files."""

import json
import os
import tempfile
import unittest

import numpy as np
from parameterized import parameterized
from PIL import Image

from copart_tf.errors import DataError
from copart_tf.evaluation import evaluator, report

SIZE = 32
GT_NAMES = ["background", "head", "torso", "legs"]


def _make_records(
  seed, num_frames, perm=(1, 2, 3), num_videos=3, with_landmarks=True, max_left=SIZE - 4
):
  """Three 4x4 GT parts in separate bands; prediction = GT relabelled by `perm`.

  Landmarks are exact linear functions of the part centroids (a corner of part 1 and the midpoint
  of parts 2 and 3), so a perfect segmentation regresses them with zero error.
  """
  rng = np.random.default_rng(seed)
  lut = np.array((0,) + tuple(perm))
  records = []
  for i in range(num_frames):
    gt = np.zeros((SIZE, SIZE), np.uint8)
    centres = []
    for k in range(3):
      top = k * 10 + int(rng.integers(0, 6))
      left = int(rng.integers(0, max_left + 1))
      gt[top : top + 4, left : left + 4] = k + 1
      centres.append((left + 1.5, top + 1.5))
    centres = np.array(centres)
    landmarks = np.stack([centres[0] + (-1.5, -1.5), 0.5 * (centres[1] + centres[2])])
    record = {
      "pred_labels": lut[gt].astype(np.int32),
      "gt_parts": gt,
      "image": np.repeat((gt[..., None] * 60).astype(np.uint8), 3, axis=-1),
      "video": f"video{i % num_videos}",
      "frame_index": i // num_videos,
    }
    if with_landmarks:
      record["landmarks"] = landmarks.astype(np.float32)
      record["visible"] = np.ones(2, bool)
    records.append(record)
  return records


class EvaluatorTest(unittest.TestCase):
  @parameterized.expand([("identity", (1, 2, 3)), ("permuted", (3, 1, 2)), ("k5", (5, 2, 4))])
  def test_perfect_segmentation(self, _, perm):
    fit = _make_records(0, 20, perm)
    test = _make_records(1, 9, perm)
    res = evaluator.evaluate(fit, test, num_pred_parts=max(perm), gt_part_names=GT_NAMES)
    model = res["methods"]["model"]
    self.assertEqual(model["foreground_iou"], 1.0)
    self.assertEqual(model["foreground_iou_dataset"], 1.0)
    for variant in ("majority", "hungarian"):
      scores = model["part_iou"][variant]
      self.assertEqual(scores["mean"], 1.0)
      self.assertEqual(scores["per_part"], [1.0, 1.0, 1.0])
      self.assertEqual(scores["per_image_mean"], 1.0)
      for g, p in enumerate(perm, start=1):
        self.assertEqual(scores["mapping"][p], g)
        self.assertEqual(scores["mapping_names"][p], GT_NAMES[g])
    self.assertAlmostEqual(model["landmarks"]["sum_256"], 0.0, places=4)
    self.assertEqual(model["landmarks"]["num_coordinates"], 4)
    self.assertEqual(res["num_pred_parts"], max(perm))
    self.assertEqual(res["gt_part_names"], GT_NAMES)
    self.assertEqual((res["num_fit_frames"], res["num_test_frames"]), (20, 9))
    json.dumps(res, allow_nan=False)  # strict JSON

  def test_baselines(self):
    fit = _make_records(0, 20)
    test = _make_records(1, 9)
    res = evaluator.evaluate(fit, test, num_pred_parts=3, gt_part_names=GT_NAMES)
    kmeans = res["methods"]["position_kmeans"]
    self.assertEqual(kmeans["foreground_iou"], res["methods"]["model"]["foreground_iou"])
    self.assertIsNotNone(kmeans["part_iou"]["majority"]["mean"])
    self.assertIsNotNone(kmeans["landmarks"]["sum_256"])
    # The mean-landmark row equals the fit-mean prediction computed by hand.
    fit_lm = np.stack([r["landmarks"] for r in fit]).astype(np.float64)
    test_lm = np.stack([r["landmarks"] for r in test]).astype(np.float64)
    expected = np.abs(test_lm - fit_lm.mean(0)).mean(0)
    mean_lm = res["methods"]["mean_landmark"]["landmarks"]
    np.testing.assert_allclose(mean_lm["per_coordinate_px"], expected, rtol=1e-6)
    self.assertAlmostEqual(mean_lm["sum_256"], expected.sum() * 256 / SIZE, places=4)
    self.assertGreater(mean_lm["sum_256"], 1.0)
    self.assertIsNone(res["methods"]["mean_landmark"]["part_iou"])

  def test_shifted_prediction(self):
    # Predictions shifted right by one pixel: every 4x4 part keeps 12 of 20 union pixels.
    fit = _make_records(0, 20)
    test = _make_records(1, 6, max_left=SIZE - 5)
    for r in test:
      r["pred_labels"] = np.roll(r["pred_labels"], 1, axis=1)
    res = evaluator.evaluate(fit, test, num_pred_parts=3, with_baselines=False)
    model = res["methods"]["model"]
    self.assertAlmostEqual(model["foreground_iou"], 0.6)
    self.assertAlmostEqual(model["part_iou"]["majority"]["mean"], 0.6)
    self.assertNotIn("position_kmeans", res["methods"])
    # Centroids move by +1 px in x, so both landmarks (exact linear functions) move by +1 px in x.
    np.testing.assert_allclose(model["landmarks"]["per_coordinate_px"], [[1, 0], [1, 0]], atol=1e-4)
    self.assertAlmostEqual(model["landmarks"]["sum_px"], 2.0, places=4)
    self.assertAlmostEqual(model["landmarks"]["mean_px"], 0.5, places=4)
    self.assertAlmostEqual(model["landmarks"]["sum_256"], 2 * 256 / SIZE, places=3)
    self.assertAlmostEqual(model["landmarks"]["mean_256"], 0.5 * 256 / SIZE, places=3)

  def test_missing_part_scores_zero(self):
    fit = _make_records(0, 20)
    test = _make_records(1, 6)
    for r in fit + test:
      r["pred_labels"] = np.where(r["pred_labels"] == 3, 0, r["pred_labels"])
    res = evaluator.evaluate(fit, test, num_pred_parts=3, gt_part_names=GT_NAMES)
    scores = res["methods"]["model"]["part_iou"]["majority"]
    self.assertEqual(scores["per_part"], [1.0, 1.0, 0.0])
    self.assertAlmostEqual(scores["mean"], 2 / 3)
    self.assertEqual(scores["mapping_names"][3], "background")

  def test_without_landmarks(self):
    fit = _make_records(0, 5, with_landmarks=False)
    test = _make_records(1, 3, with_landmarks=False)
    res = evaluator.evaluate(fit, test, num_pred_parts=3)
    self.assertIsNone(res["methods"]["model"]["landmarks"])
    self.assertIsNone(res["methods"]["mean_landmark"]["landmarks"])
    self.assertEqual(res["num_gt_parts"], 3)  # inferred from the labels
    self.assertEqual(res["gt_part_names"], ["background", "part_1", "part_2", "part_3"])
    self.assertIn("model", report.format_table(res))

  def test_samples_prefer_distinct_videos(self):
    ev = evaluator.Evaluator(3, num_samples=4)
    for r in _make_records(0, 12, num_videos=3):
      ev.add_test_frame(r)
    videos = [s["video"] for s in ev.samples]
    self.assertEqual(len(videos), 4)
    self.assertEqual(set(videos[:3]), {"video0", "video1", "video2"})

  @parameterized.expand(
    [
      ("label_above_k", {"pred_labels": np.full((4, 4), 4)}),
      ("shape_mismatch", {"gt_parts": np.zeros((4, 5), np.uint8)}),
      ("gt_above_names", {"gt_parts": np.full((4, 4), 9, np.uint8)}),
      ("landmark_shape", {"landmarks": np.zeros((2, 3))}),
      ("missing_key", {"pred_labels": None}),
    ]
  )
  def test_bad_records(self, _, override):
    record = {
      "pred_labels": np.zeros((4, 4), np.int32),
      "gt_parts": np.zeros((4, 4), np.uint8),
      "landmarks": np.zeros((2, 2)),
    }
    record.update(override)
    record = {k: v for k, v in record.items() if v is not None}
    ev = evaluator.Evaluator(3, gt_part_names=GT_NAMES)
    with self.assertRaises(DataError):
      ev.add_fit_frame(record)

  def test_needs_both_splits(self):
    ev = evaluator.Evaluator(3)
    with self.assertRaises(DataError):
      ev.result()
    ev.add_fit_frame(_make_records(0, 1)[0])
    with self.assertRaises(DataError):
      ev.result()


class ReportTest(unittest.TestCase):
  def test_palette(self):
    pal = report.part_palette(30)
    self.assertEqual(pal.shape, (31, 3))
    self.assertEqual(pal.dtype, np.uint8)
    np.testing.assert_array_equal(pal[0], [0, 0, 0])
    self.assertEqual(len({tuple(c) for c in pal}), 31)  # all distinct
    np.testing.assert_array_equal(report.part_palette(5), pal[:6])

  def test_mapped_palette(self):
    pal = report.mapped_palette([0, 2, 0, 2], num_gt_parts=2)
    gt_pal = report.part_palette(2)
    np.testing.assert_array_equal(pal[1], gt_pal[2])
    np.testing.assert_array_equal(pal[3], gt_pal[2])
    np.testing.assert_array_equal(pal[2], report.UNMAPPED_COLOR)
    np.testing.assert_array_equal(pal[0], [0, 0, 0])

  def test_write_report(self):
    fit = _make_records(0, 20, perm=(2, 3, 1))
    test = _make_records(1, 6, perm=(2, 3, 1))
    with tempfile.TemporaryDirectory() as tmp:
      out_dir = os.path.join(tmp, "eval")
      res = evaluator.evaluate(fit, test, 3, gt_part_names=GT_NAMES, report_dir=out_dir)
      for name in ("metrics.json", "report.md", "part_iou.png", "samples.png"):
        self.assertTrue(os.path.isfile(os.path.join(out_dir, name)), name)
      with open(os.path.join(out_dir, "metrics.json")) as f:
        self.assertEqual(json.load(f), res)
      with open(os.path.join(out_dir, "report.md")) as f:
        md = f.read()
      for text in ("position k-means", "mean landmark", "torso", "| 1 | legs | legs |"):
        self.assertIn(text, md)
      for name in ("part_iou.png", "samples.png"):
        with Image.open(os.path.join(out_dir, name)) as im:
          im.load()
          self.assertEqual(im.mode, "RGB")
          self.assertGreater(im.width, 100)
      with Image.open(os.path.join(out_dir, "samples.png")) as im:
        grid = np.asarray(im)
      # Predicted and GT cells use the same colours through the majority mapping.
      cell = 128  # 32 px frames enlarged x4
      pad, header = 4, 20
      pred_cell = grid[header : header + cell, pad + cell + pad : pad + 2 * cell + pad]
      gt_cell = grid[header : header + cell, pad + 2 * (cell + pad) : pad + 3 * cell + 2 * pad]
      np.testing.assert_array_equal(pred_cell, gt_cell)
    table = report.format_table(res)
    self.assertEqual(len(table.splitlines()), 6)  # header, rule, 3 methods, footer


if __name__ == "__main__":
  unittest.main()
