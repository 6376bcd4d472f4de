"""Users' own ground truth (README, "Bringing your own labels"): each layout of
`copart_tf.data.labels` through the evaluation and part naming, metrics skipped (with one warning
line) when a piece is missing, and the `evaluate` / `name_parts --from_labels` CLIs on an npz that
holds only ``parts`` and ``landmarks``.

Frames are 16x16 colour frames with a bright square (part 1) and bar (part 2); the "model" is a
colour threshold, so the expected metrics are exact.
"""

import logging
import os
import shutil
import tempfile

import app_fixtures
import numpy as np
import pytest
from PIL import Image

from copart_tf.apps import naming
from copart_tf.data import pipeline
from copart_tf.errors import DataError
from copart_tf.evaluation import run as eval_run

S = 16
T = 3


def _frame_and_parts(v, t):
  """A frame with a red square (part 1) moving with t and a green bar (part 2)."""
  frame = np.full((S, S, 3), 20, np.uint8)
  parts = np.zeros((S, S), np.uint8)
  y = 2 + t + v
  parts[y : y + 4, 2:6] = 1
  parts[10:12, 4:14] = 2
  frame[parts == 1] = (230, 30, 30)
  frame[parts == 2] = (30, 230, 30)
  landmarks = np.array([[3.5, y + 1.5], [8.5, 10.5]], np.float32)  # square centre, bar centre
  return frame, parts, landmarks


def predict(images):
  """Perfect 'model': red -> 1, green -> 2."""
  labels = np.zeros(images.shape[:3], np.int32)
  labels[images[..., 0] > 200] = 1
  labels[images[..., 1] > 200] = 2
  return labels


def write_frames(root, videos=2):
  """FOMM frame folders; returns {(split, video): (parts [T,S,S], landmarks [T,2,2])}."""
  truth = {}
  for split in ("train", "test"):
    for v in range(videos):
      folder = os.path.join(root, split, f"clip{v}")
      os.makedirs(folder)
      parts, landmarks = [], []
      for t in range(T):
        frame, p, lm = _frame_and_parts(v + (split == "test"), t)
        Image.fromarray(frame).save(os.path.join(folder, f"{t:07d}.png"))
        parts.append(p)
        landmarks.append(lm)
      truth[(split, f"clip{v}")] = (np.stack(parts), np.stack(landmarks))
  return truth


def labels_dir(root, split):
  path = os.path.join(root, "labels", split)
  os.makedirs(path, exist_ok=True)
  return path


def write_minimal_npz(root, truth, with_landmarks=True, with_parts=True):
  """The issue's layout: labels/<split>/<video>.npz with only parts and/or landmarks."""
  for (split, video), (parts, landmarks) in truth.items():
    arrays = {}
    if with_parts:
      arrays["parts"] = parts
    if with_landmarks:
      arrays["landmarks"] = landmarks
    np.savez(os.path.join(labels_dir(root, split), video + ".npz"), **arrays)


def write_label_pngs(root, truth, binary=False, every=1):
  """labels/<split>/<video>/<frame>.png, 0 = background (binary: 0/255 foreground masks)."""
  for (split, video), (parts, _) in truth.items():
    folder = os.path.join(labels_dir(root, split), video)
    os.makedirs(folder)
    for t in range(0, T, every):
      mask = np.where(parts[t] > 0, 255, 0).astype(np.uint8) if binary else parts[t]
      Image.fromarray(mask, mode="L").save(os.path.join(folder, f"{t:07d}.png"))


def write_pickles(root, truth, missing_landmark=False):
  """The reference's labels/taichi_<split>_gt.pkl (file_name, frame_number, value; -1 = missing)."""
  pandas = pytest.importorskip("pandas", reason="pandas is not installed (pip install pandas)")
  for split in ("train", "test"):
    rows = {"file_name": [], "frame_number": [], "value": []}
    for (s, video), (_, landmarks) in truth.items():
      if s != split:
        continue
      for t in range(T):
        value = landmarks[t].copy()
        if missing_landmark and t == 0:
          value[1] = -1
        rows["file_name"].append(video + ".mp4")  # the reference's names keep the extension
        rows["frame_number"].append(f"{t:07d}.png")
        rows["value"].append(value)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    pandas.DataFrame(rows).to_pickle(os.path.join(root, "labels", f"taichi_{split}_gt.pkl"))


def evaluate(root, **kwargs):
  return eval_run.evaluate_segmenter(
    predict, root, S, 2, max_fit_frames_per_video=None, batch_size=4, **kwargs
  )


@pytest.fixture
def root(tmp_path):
  return str(tmp_path / "data")


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_minimal_npz_parts_and_landmarks(root, caplog):
  truth = write_frames(root)
  write_minimal_npz(root, truth)
  with caplog.at_level(logging.INFO):
    results = evaluate(root, report_dir=os.path.join(root, "report"))
  model = results["methods"]["model"]
  assert model["foreground_iou"] == pytest.approx(1.0)
  assert model["part_iou"]["hungarian"]["mean"] == pytest.approx(1.0)
  assert model["landmarks"]["sum_256"] == pytest.approx(0.0, abs=1e-3)
  assert results["gt_part_names"] == ["background", "part_1", "part_2"]
  assert results["skipped"] == {}
  assert not _warnings(caplog)
  infos = " ".join(r.getMessage() for r in caplog.records)
  assert "no visible array" in infos and "part_1, part_2" in infos
  assert os.path.isfile(os.path.join(root, "report", "part_iou.png"))
  # Defaults: a landmark is visible when finite and inside the frame.
  (_, landmarks) = truth[("test", "clip0")]
  landmarks[1, 0] = [np.nan, 3.0]
  landmarks[2, 1] = [S + 3.0, 3.0]
  np.savez(
    os.path.join(root, "labels", "test", "clip0.npz"),
    parts=truth[("test", "clip0")][0],
    landmarks=landmarks,
  )
  records = list(pipeline.iterate_eval_frames(root, "test", S))
  assert records[0]["visible"].tolist() == [True, True]
  assert records[1]["visible"].tolist() == [False, True]
  assert records[2]["visible"].tolist() == [True, False]
  assert np.all(np.isfinite(records[1]["landmarks"]))


def test_parts_only_skips_landmarks_with_one_warning(root, caplog):
  truth = write_frames(root)
  write_minimal_npz(root, truth, with_landmarks=False)
  with caplog.at_level(logging.INFO):
    results = evaluate(root)
  assert results["methods"]["model"]["part_iou"]["majority"]["mean"] == pytest.approx(1.0)
  assert results["methods"]["model"]["landmarks"] is None
  assert set(results["skipped"]) == {"landmarks"}
  warnings = _warnings(caplog)
  for split in ("train", "test"):
    lines = [w for w in warnings if f"labels/{split}: no landmarks" in w]
    assert len(lines) == 1, warnings
    assert "landmark regression skipped" in lines[0]
  assert "skipped" in eval_run.report_lib.format_table(results)
  assert "landmark_mae_sum_256" not in eval_run.headline(results)


def test_landmarks_only_skips_segmentation(root, caplog):
  truth = write_frames(root)
  write_minimal_npz(root, truth, with_parts=False)
  with caplog.at_level(logging.WARNING):
    results = evaluate(root, report_dir=os.path.join(root, "report"))
  model = results["methods"]["model"]
  assert model["part_iou"] is None and model["foreground_iou"] is None
  assert model["landmarks"]["sum_256"] == pytest.approx(0.0, abs=1e-3)
  assert set(results["skipped"]) == {"foreground_iou", "part_iou"}
  assert any(
    "no part labels (parts) in any video: foreground and part IoU skipped" in w
    for w in _warnings(caplog)
  )
  assert os.path.isfile(os.path.join(root, "report", "report.md"))
  assert not os.path.exists(os.path.join(root, "report", "part_iou.png"))
  with pytest.raises(DataError, match="no part labels in split 'train'"):
    naming.names_from_labels(predict, root, "train", S, 2)


def test_some_videos_without_landmarks(root, caplog):
  truth = write_frames(root, videos=3)
  write_minimal_npz(root, truth)
  np.savez(os.path.join(root, "labels", "test", "clip2.npz"), parts=truth[("test", "clip2")][0])
  with caplog.at_level(logging.WARNING):
    results = evaluate(root)
  assert results["skipped"] == {}
  assert results["num_test_frames"] == 3 * T
  lines = [w for w in _warnings(caplog) if "no landmarks" in w]
  assert len(lines) == 1 and "1 of 3 labelled videos (clip2)" in lines[0], lines


def test_label_png_folders(root):
  truth = write_frames(root)
  write_label_pngs(root, truth)
  records = list(pipeline.iterate_eval_frames(root, "test", S))
  assert len(records) == 2 * T
  np.testing.assert_array_equal(records[1]["parts"], truth[("test", "clip0")][0][1])
  assert records[0]["landmarks"] is None and records[0]["part_names"] is None
  results = evaluate(root)
  assert results["methods"]["model"]["part_iou"]["hungarian"]["mean"] == pytest.approx(1.0)
  assert set(results["skipped"]) == {"landmarks"}
  named = naming.names_from_labels(predict, root, "train", S, 2)
  assert named["names"] == ["background", "part_1", "part_2"]


def test_label_pngs_for_some_frames_only(root):
  truth = write_frames(root)
  write_label_pngs(root, truth, every=2)  # frames 0 and 2
  records = list(pipeline.iterate_eval_frames(root, "test", S))
  assert [(r["video"], r["frame_index"]) for r in records] == [
    ("clip0", 0),
    ("clip0", 2),
    ("clip1", 0),
    ("clip1", 2),
  ]


def test_binary_masks_and_landmark_pickle(root):
  truth = write_frames(root)
  write_label_pngs(root, truth, binary=True)
  write_pickles(root, truth, missing_landmark=True)
  records = list(pipeline.iterate_eval_frames(root, "test", S))
  assert set(np.unique(records[0]["parts"])) == {0, 1}  # 255 -> 1: foreground
  assert records[0]["visible"].tolist() == [True, False]  # -1 in the pickle = missing
  np.testing.assert_allclose(records[1]["landmarks"], truth[("test", "clip0")][1][1])
  results = evaluate(root)
  model = results["methods"]["model"]
  assert model["foreground_iou"] == pytest.approx(1.0)
  assert model["landmarks"]["sum_256"] == pytest.approx(0.0, abs=1e-3)
  assert results["skipped"] == {}


def test_reference_evaluation_images(root):
  """The reference's evaluation set: one image per sample (test/<name>.png), a mask of the same
  name, landmarks keyed by the image's file name."""
  pandas = pytest.importorskip("pandas", reason="pandas is not installed (pip install pandas)")
  for split in ("train", "test"):
    os.makedirs(os.path.join(root, split))
    rows = {"file_name": [], "value": []}
    for i in range(3):
      frame, parts, landmarks = _frame_and_parts(i, split == "test")
      Image.fromarray(frame).save(os.path.join(root, split, f"img{i}.png"))
      Image.fromarray(np.where(parts > 0, 255, 0).astype(np.uint8)).save(
        os.path.join(labels_dir(root, split), f"img{i}.png")
      )
      rows["file_name"].append(f"img{i}.png")
      rows["value"].append(landmarks)
    pandas.DataFrame(rows).to_pickle(os.path.join(root, "labels", f"vox_{split}_gt.pkl"))
  results = evaluate(root)
  assert results["num_test_frames"] == 3
  assert results["methods"]["model"]["foreground_iou"] == pytest.approx(1.0)
  assert results["methods"]["model"]["landmarks"] is not None


def test_bad_labels_name_the_file(root):
  truth = write_frames(root)
  write_label_pngs(root, truth)
  stray = os.path.join(root, "labels", "test", "clip0", "extra.png")
  Image.fromarray(np.zeros((S, S), np.uint8)).save(stray)
  with pytest.raises(DataError, match="extra.png: matches no frame"):
    list(pipeline.iterate_eval_frames(root, "test", S))
  os.remove(stray)
  colour = os.path.join(root, "labels", "test", "clip0", "0000001.png")
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (S, S, 3), np.uint8)).save(colour)
  with pytest.raises(DataError, match="0000001.png: a colour"):
    list(pipeline.iterate_eval_frames(root, "test", S))


def test_nothing_to_evaluate(root):
  write_frames(root)
  with pytest.raises(DataError, match="no ground truth for split"):
    evaluate(root)


class TestClis:
  """`python -m copart_tf.evaluate` and `name_parts --from_labels` on the issue's dataset."""

  @classmethod
  def setup_class(cls):
    cls.tmp = tempfile.mkdtemp(prefix="copart_own_labels_")
    cls.run_dir = os.path.join(cls.tmp, "run")
    app_fixtures.make_tiny_run_dir(cls.run_dir, num_parts=3, image_size=S)
    cls.data = os.path.join(cls.tmp, "data")
    write_minimal_npz(cls.data, write_frames(cls.data))

  @classmethod
  def teardown_class(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)

  def test_evaluate_and_name_parts(self):
    evaluate_cli = app_fixtures.start_cli(
      "copart_tf.evaluate",
      f"--model={self.run_dir}",
      f"--data={self.data}",
      f"--output={os.path.join(self.tmp, 'eval')}",
    )
    name_cli = app_fixtures.start_cli(
      "copart_tf.name_parts", f"--model={self.run_dir}", f"--from_labels={self.data}", "--dry_run"
    )
    code, out, err = app_fixtures.finish_cli(evaluate_cli)
    assert code == 0, err[-3000:]
    assert "missing arrays" not in err
    assert "landmark MAE" in out and '"part_iou_majority"' in out
    code, out, err = app_fixtures.finish_cli(name_cli)
    assert code == 0, err[-3000:]
    assert "majority mapping on 6 frames" in out
