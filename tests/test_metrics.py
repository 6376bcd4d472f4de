"""Metrics and baselines on hand-made label maps whose answers are known exactly."""

import unittest

import numpy as np
from parameterized import parameterized

from copart_tf.errors import DataError
from copart_tf.evaluation import baselines, metrics


def _square(size, top, left, side, label=1, out=None):
  out = np.zeros((size, size), np.int64) if out is None else out
  out[top : top + side, left : left + side] = label
  return out


def _three_part_map(size=12):
  """GT with three parts: rows 1-3 -> 1, rows 4-6 -> 2, rows 7-9 -> 3 (columns 2..9)."""
  gt = np.zeros((size, size), np.int64)
  gt[1:4, 2:10] = 1
  gt[4:7, 2:10] = 2
  gt[7:10, 2:10] = 3
  return gt


class ForegroundIouTest(unittest.TestCase):
  def test_perfect(self):
    gt = _three_part_map()
    self.assertEqual(metrics.foreground_iou(gt, gt), 1.0)

  def test_both_empty_is_one(self):
    empty = np.zeros((5, 5), np.int64)
    self.assertEqual(metrics.foreground_iou(empty, empty), 1.0)

  def test_predicted_empty_is_zero(self):
    gt = _square(8, 2, 2, 3)
    self.assertEqual(metrics.foreground_iou(np.zeros_like(gt), gt), 0.0)

  @parameterized.expand([(1,), (2,), (3,)])
  def test_shifted_square(self, shift):
    # 4x4 square shifted right by `shift`: intersection 4 (4 - s), union 4 (4 + s).
    gt = _square(12, 2, 2, 4, label=3)
    pred = _square(12, 2, 2 + shift, 4, label=7)  # label values do not matter, only != 0
    self.assertAlmostEqual(metrics.foreground_iou(pred, gt), (4 - shift) / (4 + shift))

  def test_mean_over_images(self):
    gt = _square(12, 2, 2, 4)
    pred = _square(12, 2, 4, 4)
    self.assertAlmostEqual(metrics.mean_foreground_iou([gt, pred], [gt, gt]), (1.0 + 8 / 24) / 2)

  def test_shape_mismatch(self):
    with self.assertRaises(DataError):
      metrics.foreground_iou(np.zeros((4, 4), int), np.zeros((4, 5), int))


class ConfusionTest(unittest.TestCase):
  def test_counts(self):
    pred = np.array([[0, 1], [1, 2]])
    gt = np.array([[0, 1], [2, 2]])
    conf = metrics.confusion_counts(pred, gt, num_pred_parts=2, num_gt_parts=2)
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(conf, expected)

  def test_out_of_range(self):
    with self.assertRaises(DataError):
      metrics.confusion_counts(np.array([[3]]), np.array([[0]]), 2, 2)
    with self.assertRaises(DataError):
      metrics.confusion_counts(np.array([[0]]), np.array([[5]]), 2, 2)


class PartIouTest(unittest.TestCase):
  def _evaluate(self, pred, gt, num_pred, num_gt, mapping_fn):
    conf = metrics.confusion_counts(pred, gt, num_pred, num_gt)
    mapping = mapping_fn(conf)
    return mapping, metrics.part_iou(conf, mapping, num_gt, per_image_confusions=conf[None])

  def test_perfect(self):
    gt = _three_part_map()
    for fn in (metrics.majority_mapping, metrics.hungarian_mapping):
      mapping, res = self._evaluate(gt, gt, 3, 3, fn)
      np.testing.assert_array_equal(mapping, [0, 1, 2, 3])
      np.testing.assert_allclose(res["per_part"], 1.0)
      self.assertEqual(res["mean"], 1.0)
      self.assertEqual(res["per_image_mean"], 1.0)

  @parameterized.expand(
    [
      ("identity", [1, 2, 3]),
      ("rotate", [2, 3, 1]),
      ("swap", [3, 2, 1]),
      ("more_learned_parts", [5, 1, 4]),  # K_pred = 5, learned parts 2 and 3 unused
    ]
  )
  def test_permuted_labels(self, _, perm):
    gt = _three_part_map()
    lut = np.array([0] + perm)
    pred = lut[gt]
    num_pred = max(perm)
    for fn in (metrics.majority_mapping, metrics.hungarian_mapping):
      mapping, res = self._evaluate(pred, gt, num_pred, 3, fn)
      for g, p in enumerate(perm, start=1):
        self.assertEqual(mapping[p], g)
      self.assertEqual(mapping[0], 0)
      np.testing.assert_allclose(res["per_part"], 1.0)
      self.assertEqual(res["mean"], 1.0)

  def test_unused_learned_part_maps_to_background(self):
    gt = _three_part_map()
    mapping = metrics.majority_mapping(metrics.confusion_counts(gt, gt, 4, 3))
    self.assertEqual(mapping[4], 0)

  def test_gt_part_nobody_maps_to_scores_zero(self):
    gt = _three_part_map()
    pred = np.where(gt == 3, 0, gt)  # GT part 3 predicted as background
    for fn in (metrics.majority_mapping, metrics.hungarian_mapping):
      _, res = self._evaluate(pred, gt, 2, 3, fn)
      np.testing.assert_allclose(res["per_part"], [1.0, 1.0, 0.0])
      self.assertAlmostEqual(res["mean"], 2 / 3)

  def test_learned_part_on_background_maps_to_background(self):
    gt = _three_part_map()
    pred = gt.copy()
    pred[10:12, :] = 4  # a learned part covering only background
    for fn in (metrics.majority_mapping, metrics.hungarian_mapping):
      mapping, res = self._evaluate(pred, gt, 4, 3, fn)
      self.assertEqual(mapping[4], 0)
      self.assertEqual(res["mean"], 1.0)

  def test_over_segmentation(self):
    # GT part 1 split into two learned halves (1, 2); learned 3 = GT part 2.
    gt = np.zeros((8, 8), np.int64)
    gt[0:4, 0:4] = 1
    gt[4:8, 4:8] = 2
    pred = np.zeros_like(gt)
    pred[0:4, 0:2] = 1
    pred[0:4, 2:4] = 2
    pred[4:8, 4:8] = 3
    mapping, res = self._evaluate(pred, gt, 3, 2, metrics.majority_mapping)
    np.testing.assert_array_equal(mapping, [0, 1, 1, 2])
    np.testing.assert_allclose(res["per_part"], [1.0, 1.0])
    mapping, res = self._evaluate(pred, gt, 3, 2, metrics.hungarian_mapping)
    self.assertEqual(mapping[3], 2)
    self.assertEqual(sorted(mapping[1:3].tolist()), [0, 1])  # one half matched, one unmatched
    # Unmatched half becomes background: GT part 1 IoU = 8 / 16.
    np.testing.assert_allclose(res["per_part"], [0.5, 1.0])
    self.assertAlmostEqual(res["mean"], 0.75)

  def test_dataset_level_vs_per_image(self):
    # Image A: GT part 1 = 4 px predicted perfectly; image B: GT part 1 = 12 px, 6 predicted.
    gt_a = _square(8, 0, 0, 2)
    gt_b = np.zeros((8, 8), np.int64)
    gt_b[0:3, 0:4] = 1
    pred_b = np.zeros_like(gt_b)
    pred_b[0:3, 0:2] = 1
    confs = np.stack(
      [metrics.confusion_counts(gt_a, gt_a, 1, 1), metrics.confusion_counts(pred_b, gt_b, 1, 1)]
    )
    res = metrics.part_iou(confs.sum(0), [0, 1], 1, per_image_confusions=confs)
    self.assertAlmostEqual(res["mean"], 10 / 16)
    self.assertAlmostEqual(res["per_image_mean"], 0.75)
    self.assertAlmostEqual(res["per_part_per_image"][0], 0.75)

  def test_part_absent_and_unpredicted_is_undefined(self):
    gt = _three_part_map()
    gt_test = np.where(gt == 3, 0, gt)
    conf_fit = metrics.confusion_counts(gt, gt, 3, 3)
    mapping = metrics.majority_mapping(conf_fit)
    pred_test = gt_test  # nobody predicts part 3 on the test split, and it is absent
    conf_test = metrics.confusion_counts(pred_test, gt_test, 3, 3)
    res = metrics.part_iou(conf_test, mapping, 3, per_image_confusions=conf_test[None])
    self.assertTrue(np.isnan(res["per_part"][2]))
    self.assertEqual(res["mean"], 1.0)
    self.assertEqual(res["per_image_mean"], 1.0)

  def test_hungarian_overlap_criterion(self):
    gt = _three_part_map()
    conf = metrics.confusion_counts(gt, gt, 3, 3)
    np.testing.assert_array_equal(metrics.hungarian_mapping(conf, "overlap"), [0, 1, 2, 3])
    with self.assertRaises(ValueError):
      metrics.hungarian_mapping(conf, "dice")


def _random_frames(rng, num_frames, size=32, num_parts=3):
  """Label maps of three 4x4 squares at random positions in separate horizontal bands."""
  frames = []
  for _ in range(num_frames):
    labels = np.zeros((size, size), np.int64)
    for k in range(num_parts):
      top = k * 10 + int(rng.integers(0, 6))
      left = int(rng.integers(0, size - 4))
      labels[top : top + 4, left : left + 4] = k + 1
    frames.append(labels)
  return frames


def _centroid_matrix(frames, num_parts=3):
  return np.stack([metrics.part_centroids(f, num_parts)[0] for f in frames])


def _linear_landmarks(centroids):
  """Two landmarks, exact linear functions of the part centroids `[N, K, 2]`."""
  lm0 = centroids[:, 0] + np.array([1.0, -2.0])
  lm1 = 0.5 * (centroids[:, 1] + centroids[:, 2]) + np.array([3.0, 0.5])
  return np.stack([lm0, lm1], axis=1)


class CentroidTest(unittest.TestCase):
  def test_centroids(self):
    labels = np.zeros((6, 8), np.int64)
    labels[1:3, 2:6] = 1  # rows 1-2, cols 2-5 -> (x, y) = (3.5, 1.5)
    labels[5, 0] = 2  # (0, 5)
    centroids, present = metrics.part_centroids(labels, 3)
    np.testing.assert_allclose(centroids[:2], [[3.5, 1.5], [0.0, 5.0]])
    np.testing.assert_array_equal(present, [True, True, False])
    self.assertTrue(np.all(np.isnan(centroids[2])))

  def test_fill_values(self):
    cents = np.array(
      [[[1.0, 2.0], [np.nan, np.nan]], [[3.0, 4.0], [np.nan, np.nan]]]
    )  # part 2 never present
    fill = metrics.centroid_fill_values(cents, (10, 20))
    np.testing.assert_allclose(fill, [[2.0, 3.0], [9.5, 4.5]])
    test = np.array([[[np.nan, np.nan], [5.0, 6.0]]])
    np.testing.assert_allclose(metrics.centroid_features(test, fill), [[2.0, 3.0, 5.0, 6.0]])


class LandmarkRegressionTest(unittest.TestCase):
  def setUp(self):
    rng = np.random.default_rng(0)
    self.fit_frames = _random_frames(rng, 20)
    self.test_frames = _random_frames(rng, 8)
    self.fit_c = _centroid_matrix(self.fit_frames)
    self.test_c = _centroid_matrix(self.test_frames)
    fill = metrics.centroid_fill_values(self.fit_c, (32, 32))
    self.fit_x = metrics.centroid_features(self.fit_c, fill)
    self.test_x = metrics.centroid_features(self.test_c, fill)

  def test_exact_linear_landmarks_give_zero_error(self):
    res = metrics.landmark_regression(
      self.fit_x,
      _linear_landmarks(self.fit_c),
      None,
      self.test_x,
      _linear_landmarks(self.test_c),
      None,
      (32, 32),
    )
    self.assertAlmostEqual(res["sum_256"], 0.0, places=6)
    self.assertAlmostEqual(res["mean_px"], 0.0, places=6)
    self.assertEqual(res["num_coordinates"], 4)

  @parameterized.expand([(32, 1.0), (64, 2.5), (128, 0.75)])
  def test_known_offset(self, size, offset):
    # Test landmarks shifted right by `offset` px: MAE x = offset, y = 0 for both landmarks.
    scale = size / 32.0  # same frames, coordinates in a larger frame
    test_lm = _linear_landmarks(self.test_c) + np.array([offset, 0.0])
    res = metrics.landmark_regression(
      self.fit_x * scale,
      _linear_landmarks(self.fit_c) * scale,
      None,
      self.test_x * scale,
      test_lm * scale,
      None,
      (size, size),
    )
    np.testing.assert_allclose(
      res["per_coordinate_px"], [[offset * scale, 0], [offset * scale, 0]], atol=1e-6
    )
    self.assertAlmostEqual(res["sum_px"], 2 * offset * scale, places=5)
    self.assertAlmostEqual(res["mean_px"], offset * scale / 2, places=5)
    self.assertAlmostEqual(res["sum_256"], 2 * offset * scale * 256 / size, places=5)
    self.assertAlmostEqual(res["mean_256"], offset * scale * 256 / size / 2, places=5)

  def test_invisible_landmarks_are_skipped(self):
    fit_lm = _linear_landmarks(self.fit_c)
    test_lm = _linear_landmarks(self.test_c)
    fit_vis = np.ones(fit_lm.shape[:2], bool)
    test_vis = np.ones(test_lm.shape[:2], bool)
    fit_lm[::3, 0] = -1.0  # garbage where invisible
    fit_vis[::3, 0] = False
    fit_lm[1, 1] = np.nan  # non-finite counts as missing too
    test_lm[::2, 1] = 1e6
    test_vis[::2, 1] = False
    res = metrics.landmark_regression(
      self.fit_x, fit_lm, fit_vis, self.test_x, test_lm, test_vis, (32, 32)
    )
    self.assertAlmostEqual(res["sum_px"], 0.0, places=6)

  def test_coordinate_without_samples_is_left_out(self):
    fit_lm = _linear_landmarks(self.fit_c)
    fit_vis = np.ones(fit_lm.shape[:2], bool)
    fit_vis[:, 1] = False
    res = metrics.landmark_regression(
      self.fit_x, fit_lm, fit_vis, self.test_x, _linear_landmarks(self.test_c), None, (32, 32)
    )
    self.assertEqual(res["num_coordinates"], 2)
    self.assertTrue(np.all(np.isnan(res["per_coordinate_px"][1])))


class MeanLandmarkBaselineTest(unittest.TestCase):
  def test_known_mae(self):
    fit = np.array([[[0.0, 4.0]], [[10.0, 8.0]]])  # mean (5, 6)
    test = np.array([[[8.0, 6.0]], [[5.0, 2.0]]])  # |err| x: 3, 0; y: 0, 4
    res = baselines.mean_landmark_baseline(fit, None, test, None, (128, 64))
    np.testing.assert_allclose(res["per_coordinate_px"], [[1.5, 2.0]])
    self.assertAlmostEqual(res["sum_px"], 3.5)
    self.assertAlmostEqual(res["mean_px"], 1.75)
    # x scaled by 256 / 64 (width), y by 256 / 128 (height).
    np.testing.assert_allclose(res["per_coordinate_256"], [[6.0, 4.0]])
    self.assertAlmostEqual(res["sum_256"], 10.0)

  def test_invisible_fit_sample_ignored(self):
    fit = np.array([[[0.0, 0.0]], [[10.0, 10.0]], [[1000.0, 1000.0]]])
    vis = np.array([[True], [True], [False]])
    test = np.array([[[5.0, 5.0]]])
    res = baselines.mean_landmark_baseline(fit, vis, test, None, (32, 32))
    self.assertAlmostEqual(res["sum_px"], 0.0)


class KMeansBaselineTest(unittest.TestCase):
  @parameterized.expand(
    [
      ("top_bottom", (2, 10), (20, 12), (1, 2)),  # blob A above blob B -> A = 1
      ("bottom_top", (22, 3), (2, 20), (2, 1)),  # blob A below blob B -> B = 1
      ("same_row", (10, 20), (10, 2), (2, 1)),  # same y -> ordered by x
    ]
  )
  def test_two_blobs(self, _, blob_a, blob_b, expected):
    pred = np.zeros((32, 32), np.int64)
    pred[blob_a[0] : blob_a[0] + 6, blob_a[1] : blob_a[1] + 6] = 3
    pred[blob_b[0] : blob_b[0] + 6, blob_b[1] : blob_b[1] + 6] = 3
    labels = baselines.position_kmeans_labels(pred, 2)
    a = labels[blob_a[0] : blob_a[0] + 6, blob_a[1] : blob_a[1] + 6]
    b = labels[blob_b[0] : blob_b[0] + 6, blob_b[1] : blob_b[1] + 6]
    self.assertTrue(np.all(a == expected[0]))
    self.assertTrue(np.all(b == expected[1]))
    np.testing.assert_array_equal(labels != 0, pred != 0)

  def test_deterministic(self):
    rng = np.random.default_rng(3)
    pred = (rng.random((24, 24)) > 0.4).astype(np.int64)
    a = baselines.position_kmeans_labels(pred, 5)
    b = baselines.position_kmeans_labels(pred, 5)
    np.testing.assert_array_equal(a, b)
    self.assertEqual(set(np.unique(a)) - {0}, {1, 2, 3, 4, 5})

  def test_empty_and_tiny_foreground(self):
    empty = np.zeros((8, 8), np.int64)
    np.testing.assert_array_equal(baselines.position_kmeans_labels(empty, 4), empty)
    tiny = empty.copy()
    tiny[1, 1] = tiny[6, 6] = 1
    labels = baselines.position_kmeans_labels(tiny, 4)
    self.assertEqual(labels[1, 1], 1)
    self.assertEqual(labels[6, 6], 2)

  def test_kmeans_centres(self):
    points = np.concatenate([np.zeros((10, 2)), np.full((5, 2), 10.0)])
    centres, assignment = baselines.kmeans(points, 2)
    self.assertEqual(sorted(centres[:, 0].tolist()), [0.0, 10.0])
    self.assertEqual(len(set(assignment[:10])), 1)
    self.assertNotEqual(assignment[0], assignment[-1])


if __name__ == "__main__":
  unittest.main()
