"""benchmarks/landmark_oracles.py: the left/right helpers on hand-made cases, and one run on figure2d.

The run generates a small figure2d dataset (8 + 2 videos x 16 frames at 64 px, a few seconds)
and checks the order the rows must come in whatever the data: the labelled parts locate the
joints far better than no features, and better than the same parts with left and right merged.
"""

import os
import tempfile
import unittest

import benchmark_scripts
import numpy as np

from copart_tf.synthetic import figure2d

oracles = benchmark_scripts.load("landmark_oracles")


class HelpersTest(unittest.TestCase):
  def test_pairs_from_names(self):
    names = ["background", "head", "left_arm", "torso", "right_arm", "left_leg", "tail"]
    self.assertEqual(oracles.left_right_pairs(names), [(2, 4)])
    self.assertEqual(
      oracles.left_right_pairs(figure2d.PART_NAMES), [(3, 4), (5, 6), (7, 8), (9, 10)]
    )

  def test_merge_relabels_right_as_left(self):
    parts = np.array([[0, 1, 2], [3, 4, 4]])
    np.testing.assert_array_equal(
      oracles.merge_pairs(parts, [(2, 4)]), np.array([[0, 1, 2], [3, 2, 2]])
    )
    np.testing.assert_array_equal(parts, np.array([[0, 1, 2], [3, 4, 4]]))  # not in place

  def test_label_by_x_swaps_only_where_left_lies_right(self):
    # Labels 1 and 2 form the pair; label 3 is not in a pair.
    ordered = np.array([[1, 0, 2, 3]])
    swapped = np.array([[2, 0, 1, 3]])
    one_absent = np.array([[0, 0, 2, 3]])
    parts = np.stack([ordered, swapped, one_absent])
    out = oracles.label_pairs_by_x(parts, [(1, 2)], 3)
    np.testing.assert_array_equal(out[0], ordered)
    np.testing.assert_array_equal(out[1], ordered)
    np.testing.assert_array_equal(out[2], one_absent)
    np.testing.assert_array_equal(parts[1], swapped)  # not in place

  def test_label_by_x_swaps_two_pairs_in_one_frame(self):
    parts = np.array([[[2, 1, 4, 3]]])
    out = oracles.label_pairs_by_x(parts, [(1, 2), (3, 4)], 4)
    np.testing.assert_array_equal(out, [[[1, 2, 3, 4]]])

  def test_part_ious_of_the_truth_and_of_one_blob(self):
    parts = np.array([[[0, 1, 1, 2, 2]], [[0, 2, 2, 1, 1]]])
    truth = oracles.part_ious(parts, parts, parts, parts, 2, 2)
    self.assertEqual(truth, {"majority": 1.0, "hungarian": 1.0})
    blob = (parts > 0).astype(np.int64)  # one part over both: majority maps it to one label
    ious = oracles.part_ious(blob, parts, blob, parts, 1, 2)
    self.assertAlmostEqual(ious["majority"], 0.25)  # IoU 0.5 for one label, 0 for the other


class RunTest(unittest.TestCase):
  def test_rows_on_figure2d(self):
    with tempfile.TemporaryDirectory() as tmp:
      data_dir = os.path.join(tmp, "figure2d")
      figure2d.synthesize_figure2d_dataset(
        data_dir, train_videos=8, test_videos=2, frames=16, size=64, contact_sheet=False
      )
      args = oracles.parse_args([f"--data_dir={data_dir}", "--image_size=64", "--kmeans=2,10"])
      results = oracles.run(args)
    rows = {name: row["sum_256"] for name, row in results["rows"].items()}
    self.assertEqual(
      list(rows),
      [
        "mean landmark",
        "GT parts",
        "GT parts, left/right merged",
        "GT parts, left/right by image side",
        "position k-means 2",
        "position k-means 10",
      ],
    )
    self.assertEqual(results["num_fit_frames"], 8 * 16)
    self.assertEqual(results["num_test_frames"], 2 * 16)
    self.assertEqual(len(results["left_right_pairs"]), 4)
    self.assertLess(rows["GT parts"], 0.5 * rows["mean landmark"])
    self.assertLess(rows["GT parts"], rows["GT parts, left/right merged"])
    self.assertLess(rows["position k-means 10"], rows["mean landmark"])
    ious = {name: row["part_iou_majority"] for name, row in results["rows"].items()}
    self.assertIsNone(ious["mean landmark"])
    self.assertEqual(ious["GT parts"], 1.0)
    # figure2d's figure faces the camera, so its image side is its anatomical side (1.0 here;
    # 0.531 on the humanoid, whose camera azimuth is uniform); merged pairs lose half of every
    # pair's labels.
    self.assertLessEqual(ious["GT parts, left/right by image side"], 1.0)
    self.assertLess(ious["GT parts, left/right merged"], ious["GT parts, left/right by image side"])
    self.assertLess(ious["position k-means 10"], ious["GT parts, left/right by image side"])
    self.assertIn("GT parts", oracles.format_table(results))

  def test_bad_flags_are_one_line_errors(self):
    with self.assertRaises(SystemExit):
      oracles.parse_args(["--kmeans=a,b"])
    with self.assertRaises(SystemExit):
      oracles.parse_args(["--data_dir=/nonexistent/dir"])


if __name__ == "__main__":
  unittest.main()
