"""Ground-truth side-car files: round trip, deterministic bytes, validation errors naming the file."""

import os
import tempfile
import unittest
import zipfile

import numpy as np
from parameterized import parameterized

from copart_tf.data.ground_truth import read_ground_truth, write_ground_truth
from copart_tf.errors import DataError

T, H, W, L = 3, 8, 10, 4


def _example():
  rng = np.random.default_rng(0)
  return {
    "parts": rng.integers(0, 3, size=(T, H, W)).astype(np.uint8),
    "links": rng.integers(0, 5, size=(T, H, W)).astype(np.uint8),
    "landmarks": rng.uniform(0, 9, size=(T, L, 2)).astype(np.float32),
    "visible": rng.uniform(size=(T, L)) > 0.3,
    "part_names": ["background", "a", "b"],
    "link_names": ["background", "base", "l0", "l1", "l2"],
    "landmark_names": ["p", "q", "r", "s"],
  }


class GroundTruthTest(unittest.TestCase):
  def setUp(self):
    self._tmp = tempfile.TemporaryDirectory()
    self.tmp = self._tmp.name

  def tearDown(self):
    self._tmp.cleanup()

  def _path(self, name="video.npz"):
    return os.path.join(self.tmp, "labels", "train", name)

  def _raw(self, **override):
    """Writes an npz with np.savez (no validation), to test the reader."""
    arrays = _example()
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = os.path.join(self.tmp, "raw.npz")
    np.savez(path, **arrays)
    return path

  def test_round_trip(self):
    ex = _example()
    write_ground_truth(self._path(), **ex)
    gt = read_ground_truth(self._path(), num_frames=T, image_size=(H, W))
    for key in ("parts", "links", "landmarks", "visible"):
      np.testing.assert_array_equal(gt[key], ex[key])
    self.assertEqual(gt["parts"].dtype, np.uint8)
    self.assertEqual(gt["links"].dtype, np.uint8)
    self.assertEqual(gt["landmarks"].dtype, np.float32)
    self.assertEqual(gt["visible"].dtype, bool)
    self.assertEqual(gt["part_names"], ex["part_names"])
    self.assertEqual(gt["link_names"], ex["link_names"])
    self.assertEqual(gt["landmark_names"], ex["landmark_names"])
    self.assertEqual(gt["num_parts"], 2)

  def test_deterministic_bytes(self):
    a, b = self._path("a.npz"), self._path("b.npz")
    write_ground_truth(a, **_example())
    os.utime(a, (0, 0))  # file times must not matter; zip entry times are fixed
    write_ground_truth(b, **_example())
    with open(a, "rb") as fa, open(b, "rb") as fb:
      self.assertEqual(fa.read(), fb.read())
    with zipfile.ZipFile(a) as zf:
      for info in zf.infolist():
        self.assertEqual(info.date_time, (1980, 1, 1, 0, 0, 0))

  def test_missing_file(self):
    path = self._path("nope.npz")
    with self.assertRaisesRegex(DataError, "nope.npz"):
      read_ground_truth(path)

  def test_corrupt_file(self):
    path = self._path("bad.npz")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
      f.write(b"not a zip file")
    with self.assertRaisesRegex(DataError, "bad.npz"):
      read_ground_truth(path)

  def test_pickled_arrays_are_refused(self):
    path = self._raw(part_names=np.array(["background", "a", "b"], dtype=object))
    with self.assertRaisesRegex(DataError, "raw.npz"):
      read_ground_truth(path)

  @parameterized.expand(
    [
      (
        "no_parts_no_landmarks",
        dict(parts=None, links=None, landmarks=None),
        "neither parts .* nor landmarks",
      ),
      ("parts_dtype", dict(parts=np.zeros((T, H, W), np.float32)), "parts must be uint8"),
      ("links_shape", dict(links=np.zeros((T, H, W + 1), np.uint8)), "links shape"),
      ("landmarks_shape", dict(landmarks=np.zeros((T, L, 3), np.float32)), "landmarks must be"),
      ("visible_shape", dict(visible=np.zeros((T, L + 1), bool)), "visible must be"),
      ("names_count", dict(landmark_names=np.array(["p"])), "landmark_names"),
      ("background_first", dict(part_names=np.array(["a", "background", "b"])), "background"),
      ("part_label_range", dict(parts=np.full((T, H, W), 7, np.uint8)), "label 7"),
      ("link_label_range", dict(links=np.full((T, H, W), 9, np.uint8)), "label 9"),
      ("nan", dict(landmarks=np.full((T, L, 2), np.nan, np.float32)), "NaN"),
    ]
  )
  def test_validation_names_the_file(self, _, override, message):
    path = self._raw(**override)
    with self.assertRaisesRegex(DataError, "raw.npz") as ctx:
      read_ground_truth(path)
    self.assertRegex(str(ctx.exception), message)

  def test_expected_frames_and_size(self):
    write_ground_truth(self._path(), **_example())
    with self.assertRaisesRegex(DataError, "video.npz.*3 frames.*5"):
      read_ground_truth(self._path(), num_frames=5)
    with self.assertRaisesRegex(DataError, "video.npz.*8x10.*16x16"):
      read_ground_truth(self._path(), image_size=16)

  def test_write_validates(self):
    ex = _example()
    ex["visible"] = ex["visible"][:, :2]
    with self.assertRaisesRegex(DataError, "video.npz"):
      write_ground_truth(self._path(), **ex)
    self.assertFalse(os.path.exists(self._path()))
    ex = _example()
    ex["parts"] = ex["parts"].astype(np.int32) + 300
    with self.assertRaisesRegex(DataError, "uint8"):
      write_ground_truth(self._path(), **ex)


if __name__ == "__main__":
  unittest.main()
