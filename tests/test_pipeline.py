"""Tests of copart_tf.data.pipeline (training pairs, evaluation frames) and landmark pickles.

Frames encode their origin: red = 20 + 40 * video, green = 12 * frame index, blue = 128, so a
pair's video and frame order can be read back from the pixels.
"""

import logging
import os

import imageio
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from copart_tf.data import landmark_pickles, pipeline
from copart_tf.errors import ConfigError, DataError

SIZE = 8


def _frame(video, t, size=SIZE):
  return np.full((size, size, 3), (20 + 40 * video, 12 * t, 128), np.uint8)


def _folder(path, video, num_frames, size=SIZE, mode=None):
  os.makedirs(path, exist_ok=True)
  for t in range(num_frames):
    image = Image.fromarray(_frame(video, t, size))
    if mode is not None:
      image = image.convert(mode)
    image.save(os.path.join(path, f"{t:07d}.png"))


def _dataset(root, num_videos=4, num_frames=6, split="train"):
  for v in range(num_videos):
    _folder(os.path.join(root, split, f"vid{v}"), v, num_frames)
  return str(root)


def _take(ds, n):
  return [{k: v.numpy() for k, v in batch.items()} for _, batch in zip(range(n), ds, strict=False)]


def _decode(pixel):
  """(video, frame) from a pixel's float RGB."""
  r, g = pixel[0] * 255.0, pixel[1] * 255.0
  return int(round((r - 20) / 40)), int(round(g / 12))


def test_shapes_dtypes_ranges(tmp_path):
  root = _dataset(tmp_path)
  ds = pipeline.make_pair_dataset(root, "train", 16, 6, seed=0)
  assert ds.element_spec["source"].shape.as_list() == [6, 16, 16, 3]
  (batch,) = _take(ds, 1)
  for key in ("source", "target"):
    assert batch[key].shape == (6, 16, 16, 3) and batch[key].dtype == np.float32
    assert batch[key].min() >= 0.0 and batch[key].max() <= 1.0


def test_pairs_from_one_video_source_earlier_balanced(tmp_path):
  root = _dataset(tmp_path)
  ds = pipeline.make_pair_dataset(root, "train", SIZE, 8, seed=1, augment=False)
  seen_videos, ordered_pairs = set(), 0
  for batch in _take(ds, 3):
    videos = []
    for src, tgt in zip(batch["source"], batch["target"], strict=True):
      v_s, t_s = _decode(src[0, 0])
      v_t, t_t = _decode(tgt[0, 0])
      assert v_s == v_t
      assert t_s <= t_t
      videos.append(v_s)
      ordered_pairs += t_s < t_t
    # Epoch-balanced: every 4 consecutive examples cover the 4 videos once.
    assert sorted(videos[:4]) == [0, 1, 2, 3] and sorted(videos[4:]) == [0, 1, 2, 3]
    seen_videos.update(videos)
  assert seen_videos == {0, 1, 2, 3}
  assert ordered_pairs > 0


def test_determinism_seed_and_start_step_resume(tmp_path):
  root = _dataset(tmp_path)
  full = _take(pipeline.make_pair_dataset(root, "train", SIZE, 3, seed=5), 6)
  # Resuming at step 3 yields exactly batches 3, 4, 5 of the uninterrupted run.
  resumed = _take(pipeline.make_pair_dataset(root, "train", SIZE, 3, seed=5, start_step=3), 3)
  for x, y in zip(full[3:], resumed, strict=True):
    np.testing.assert_array_equal(x["source"], y["source"])
    np.testing.assert_array_equal(x["target"], y["target"])
  other = _take(pipeline.make_pair_dataset(root, "train", SIZE, 3, seed=6), 2)
  assert any(
    not np.array_equal(x["source"], z["source"]) for x, z in zip(full[:2], other, strict=True)
  )


def test_id_sampling_draws_identities_equally(tmp_path):
  for v in range(5):
    _folder(tmp_path / "train" / f"bob#clip{v}", 1, 2)
  _folder(tmp_path / "train" / "alice#clip0", 0, 2)
  kw = dict(augment=False, seed=3)
  (batch,) = _take(pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 12, **kw), 1)
  alice = sum(_decode(s[0, 0])[0] == 0 for s in batch["source"])
  assert alice == 2  # 12 draws over 6 videos, one of them alice's
  (batch,) = _take(
    pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 12, id_sampling=True, **kw), 1
  )
  alice = sum(_decode(s[0, 0])[0] == 0 for s in batch["source"])
  assert alice == 6  # 12 draws over 2 identities


def test_mixed_video_kinds(tmp_path):
  train = tmp_path / "train"
  _folder(train / "v0", 0, 4)
  frames1 = [_frame(1, t, 16) for t in range(5)]
  imageio.mimwrite(train / "v1.mp4", frames1, fps=5, macro_block_size=1)
  imageio.mimwrite(train / "v2.gif", [_frame(2, t) for t in range(3)], duration=100, loop=0)
  Image.fromarray(np.concatenate([_frame(3, t) for t in range(4)], axis=1)).save(train / "v3.png")
  ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 8, seed=4, augment=False)
  seen = set()
  for batch in _take(ds, 2):
    for src, tgt in zip(batch["source"], batch["target"], strict=True):
      v_s, t_s = _decode(src[4, 4])
      v_t, t_t = _decode(tgt[4, 4])
      assert v_s == v_t and t_s <= t_t
      seen.add(v_s)
  assert seen == {0, 1, 2, 3}


def test_non_rgb_frames_and_mixed_sizes(tmp_path):
  train = tmp_path / "train"
  _folder(train / "gray", 2, 3, mode="L")
  _folder(train / "rgba", 1, 3, mode="RGBA")
  os.makedirs(train / "sixteen")
  for t in range(2):  # 16-bit gray PNG of value 0.5
    Image.fromarray(np.full((12, 12), 32768, np.uint16)).save(train / "sixteen" / f"{t}.png")
  os.makedirs(train / "mixed")
  for t, size in enumerate((8, 13, 30)):  # mixed sizes within a video (and across videos)
    Image.fromarray(_frame(0, t, size)).save(train / "mixed" / f"{t}.png")
  ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 8, seed=0, augment=False)
  for batch in _take(ds, 2):
    for img in np.concatenate([batch["source"], batch["target"]]):
      assert img.shape == (SIZE, SIZE, 3)
      pixel = img[3, 3] * 255
      if np.allclose(pixel[0], pixel[1], atol=1) and np.allclose(pixel[1], pixel[2], atol=1):
        continue  # gray (replicated) or 16-bit gray
      video, _ = _decode(img[3, 3])
      assert video in (0, 1)


def _warnings(caplog, text):
  return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_odd_frames_are_used_and_reported_once_per_video(tmp_path, caplog):
  train = tmp_path / "train"
  _folder(train / "ok", 0, 3)
  _folder(train / "gray", 1, 3, mode="L")
  _folder(train / "graya", 2, 3, mode="LA")
  _folder(train / "rgba", 3, 3, mode="RGBA")
  _folder(train / "sized", 4, 3)
  Image.fromarray(_frame(4, 1, 13)).save(train / "sized" / "0000001.png")  # 13x13 among 8x8
  Image.fromarray(_frame(4, 2, 13)).save(train / "sized" / "0000002.png")
  strip = np.concatenate([_frame(5, t) for t in range(3)], axis=1)
  Image.fromarray(strip).convert("L").save(train / "strip.png")  # a grey frame strip
  with caplog.at_level(logging.WARNING):
    ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 12, seed=0, augment=False)
    batches = _take(ds, 4)
  for batch in batches:  # training goes on: every pair is there, RGB, at the model size
    assert batch["source"].shape == (12, SIZE, SIZE, 3)
  kinds = {
    "gray": "is grey,",
    "graya": "is grey + alpha",
    "rgba": "is RGBA",
    "strip.png": "is grey,",
  }
  for video, kind in kinds.items():
    lines = _warnings(caplog, f"video {train / video}:")
    assert len(lines) == 1, lines  # once per video, naming it and the frame
    assert kind in lines[0] and "converted to RGB" in lines[0]
  (line,) = _warnings(caplog, f"video {train / 'sized'}:")
  assert "13x13" in line and "first frame is 8x8" in line and str(train / "sized") in line
  assert not _warnings(caplog, f"video {train / 'ok'}:")


def test_one_frame_videos_are_skipped_with_a_warning(tmp_path, caplog):
  train = tmp_path / "train"
  _folder(train / "two", 0, 2)
  _folder(train / "single", 1, 1)
  Image.fromarray(_frame(2, 0)).save(train / "square.png")  # a strip of one frame
  imageio.mimwrite(train / "still.gif", [_frame(3, 0)], duration=100)
  # An mp4's frames are counted only when read: it is skipped when first drawn.
  imageio.mimwrite(train / "still.mp4", [_frame(4, 0, 16)], fps=5, macro_block_size=1)
  with caplog.at_level(logging.WARNING):
    ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 8, seed=0, augment=False)
    batches = _take(ds, 2)
  for batch in batches:
    assert {_decode(s[0, 0])[0] for s in batch["source"]} == {0}
  for name in ("single", "square.png", "still.gif", "still.mp4"):
    lines = _warnings(caplog, f"skipping video {train / name}:")
    assert len(lines) == 1 and "has 1 frame" in lines[0], (name, caplog.text)


def test_only_one_frame_videos_is_a_clear_error(tmp_path):
  _folder(tmp_path / "train" / "single", 0, 1)
  with pytest.raises(DataError, match=r"no video of split 'train' .* has 2 frames or more"):
    pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 2, seed=0)


def test_config_errors(tmp_path):
  root = _dataset(tmp_path, num_videos=1)
  with pytest.raises(ConfigError, match="not divisible"):
    pipeline.make_pair_dataset(root, "train", SIZE, 5, seed=0, num_replicas=2)
  with pytest.raises(ConfigError, match="on_bad_frame"):
    pipeline.make_pair_dataset(root, "train", SIZE, 2, seed=0, on_bad_frame="retry")
  with pytest.raises(ConfigError, match="image_size"):
    pipeline.make_pair_dataset(root, "train", 0, 2, seed=0)
  ds = pipeline.make_pair_dataset(root, "train", SIZE, 4, seed=0, num_replicas=2)
  assert ds.element_spec["source"].shape[0] == 4


def test_missing_and_empty_splits(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    pipeline.make_pair_dataset(str(tmp_path / "none"), "train", SIZE, 2, seed=0)
  (tmp_path / "train").mkdir()
  with pytest.raises(DataError, match="no videos"):
    pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 2, seed=0)


def _corrupt_dataset(root):
  """Two good videos and one of two frames that are truncated PNGs (headers intact)."""
  _dataset(root, num_videos=2, num_frames=3)
  bad = os.path.join(root, "train", "vid2")
  _folder(bad, 2, 3)
  frames = [os.path.join(bad, f"{t:07d}.png") for t in (1, 2)]
  for frame in frames:
    data = open(frame, "rb").read()
    with open(frame, "wb") as f:
      f.write(data[:-20])  # header intact, pixel data cut
  os.remove(os.path.join(bad, "0000000.png"))
  return frames


def test_bad_frame_fail_names_the_file(tmp_path):
  bad_frames = _corrupt_dataset(tmp_path)
  ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 3, seed=0)
  with pytest.raises(DataError, match=r"vid2/000000[12]\.png"):
    with pipeline.translate_data_errors():
      _take(ds, 2)
  assert all(os.path.exists(f) for f in bad_frames)


def test_bad_frame_skip_substitutes_deterministically(tmp_path, caplog):
  bad_frames = _corrupt_dataset(tmp_path)
  with caplog.at_level(logging.WARNING):
    a = _take(
      pipeline.make_pair_dataset(
        str(tmp_path), "train", SIZE, 6, seed=0, augment=False, on_bad_frame="skip"
      ),
      3,
    )
  b = _take(
    pipeline.make_pair_dataset(
      str(tmp_path), "train", SIZE, 6, seed=0, augment=False, on_bad_frame="skip"
    ),
    3,
  )
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x["source"], y["source"])
  videos = {_decode(s[0, 0])[0] for batch in a for s in batch["source"]}
  assert videos == {0, 1}
  counts = [caplog.text.count(f) for f in bad_frames]
  assert max(counts) == 1 and min(counts) <= 1  # warned once per file, naming it


def test_skip_gives_up_when_everything_is_bad(tmp_path):
  folder = tmp_path / "train" / "bad"
  _folder(folder, 0, 2)
  for frame in folder.iterdir():
    frame.write_bytes(frame.read_bytes()[:-20])
  ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 2, seed=0, on_bad_frame="skip")
  with pytest.raises(DataError, match="gave up"):
    with pipeline.translate_data_errors():
      _take(ds, 1)


def test_corrupt_video_file_fail_and_skip(tmp_path, caplog):
  _dataset(tmp_path, num_videos=1, num_frames=2)
  clip = tmp_path / "train" / "clip.mp4"
  imageio.mimwrite(clip, [_frame(1, t, 16) for t in range(3)], fps=5, macro_block_size=1)
  (tmp_path / "train" / "broken.mp4").write_bytes(b"garbage" * 64)
  with pytest.raises(DataError, match="broken.mp4"):  # caught by the scan
    pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 2, seed=0)
  with caplog.at_level(logging.WARNING):
    ds = pipeline.make_pair_dataset(
      str(tmp_path), "train", SIZE, 4, seed=0, augment=False, on_bad_frame="skip"
    )
  assert "dropping video" in caplog.text and "broken.mp4" in caplog.text
  # A file that goes bad after the scan is substituted when read.
  clip.write_bytes(b"garbage" * 64)
  (batch,) = _take(ds, 1)
  assert {_decode(s[0, 0])[0] for s in batch["source"]} == {0}
  assert "clip.mp4" in caplog.text


def test_file_deleted_after_scan_fails_with_name(tmp_path):
  root = _dataset(tmp_path, num_videos=1, num_frames=4)
  ds = pipeline.make_pair_dataset(root, "train", SIZE, 8, seed=0)
  for t in range(1, 3):
    os.remove(os.path.join(root, "train", "vid0", f"{t:07d}.png"))
  with pytest.raises(DataError, match="vid0/000000[12].png"):
    with pipeline.translate_data_errors():
      _take(ds, 2)


def test_unpatterned_frame_names(tmp_path):
  folder = tmp_path / "train" / "v"
  os.makedirs(folder)
  for t, name in enumerate(["a.png", "b.jpg", "frame10.png"]):
    Image.fromarray(_frame(0, t)).save(folder / name)
  ds = pipeline.make_pair_dataset(str(tmp_path), "train", SIZE, 8, seed=0, augment=False)
  (batch,) = _take(ds, 1)
  frames = {_decode(s[2, 2])[1] for s in np.concatenate([batch["source"], batch["target"]])}
  assert frames <= {0, 1, 2} and len(frames) >= 2


# ---------------------------------------------------------------------------------------------
# Evaluation frames


def _write_gt(path, num_frames, height, width, num_parts=2):
  parts = np.zeros((num_frames, height, width), np.uint8)
  parts[:, : height // 2] = 1
  parts[:, height // 2 :, : width // 2] = 2
  landmarks = np.tile(
    np.array([[0.0, 0.0], [width - 1.0, height - 1.0]], np.float32), (num_frames, 1, 1)
  )
  visible = np.ones((num_frames, 2), bool)
  visible[:, 1] = False
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(
    path,
    parts=parts,
    links=parts.copy(),
    landmarks=landmarks,
    visible=visible,
    part_names=np.array(["background"] + [f"p{i}" for i in range(1, num_parts + 1)]),
    link_names=np.array(["background", "l1", "l2"]),
    landmark_names=np.array(["top_left", "bottom_right"]),
  )


def test_iterate_eval_frames(tmp_path):
  _folder(tmp_path / "test" / "labeled.mp4", 0, 3, size=20)
  _folder(tmp_path / "test" / "unlabeled", 1, 2, size=20)
  _write_gt(tmp_path / "labels" / "test" / "labeled.mp4.npz", 3, 20, 20)
  records = list(pipeline.iterate_eval_frames(str(tmp_path), "test", 10))
  assert [(r["video"], r["frame_index"]) for r in records] == [("labeled.mp4", t) for t in range(3)]
  r = records[1]
  assert r["image"].shape == (10, 10, 3) and r["image"].dtype == np.uint8
  np.testing.assert_array_equal(r["image"][5, 5], _frame(0, 1)[0, 0])
  assert r["original_shape"] == (20, 20)
  assert r["parts"].shape == (10, 10) and r["parts"].dtype == np.uint8
  assert set(np.unique(r["parts"])) == {0, 1, 2}
  assert (r["parts"][:5] == 1).all() and (r["parts"][5:, :5] == 2).all()
  np.testing.assert_allclose(r["landmarks"], [[-0.25, -0.25], [9.25, 9.25]])
  np.testing.assert_array_equal(r["visible"], [True, False])
  assert r["part_names"] == ["background", "p1", "p2"]
  assert r["landmark_names"] == ["top_left", "bottom_right"]
  limited = list(pipeline.iterate_eval_frames(str(tmp_path), "test", 10, max_frames_per_video=2))
  assert len(limited) == 2


def test_iterate_eval_frames_errors(tmp_path):
  _folder(tmp_path / "test" / "v", 0, 3, size=20)
  with pytest.raises(DataError, match="no ground truth"):
    list(pipeline.iterate_eval_frames(str(tmp_path), "test", 10))
  _write_gt(tmp_path / "labels" / "test" / "v.npz", 4, 20, 20)
  with pytest.raises(DataError, match="4 frames"):
    list(pipeline.iterate_eval_frames(str(tmp_path), "test", 10))
  _write_gt(tmp_path / "labels" / "test" / "v.npz", 3, 16, 16)
  with pytest.raises(DataError, match="16x16"):
    list(pipeline.iterate_eval_frames(str(tmp_path), "test", 10))


def test_eval_frames_from_mp4(tmp_path):
  os.makedirs(tmp_path / "test")
  imageio.mimwrite(
    tmp_path / "test" / "clip.mp4", [_frame(1, t, 16) for t in range(4)], fps=5, macro_block_size=1
  )
  _write_gt(tmp_path / "labels" / "test" / "clip.npz", 4, 16, 16)
  records = list(pipeline.iterate_eval_frames(str(tmp_path), "test", 16))
  assert [r["frame_index"] for r in records] == [0, 1, 2, 3]
  assert records[0]["parts"].shape == (16, 16)


# ---------------------------------------------------------------------------------------------
# Landmark pickles


def _pandas():
  try:
    import pandas
  except ImportError:
    print("pandas is not installed: skipping the landmark pickle test")
    pytest.skip("pandas is not installed (pip install pandas)")
  return pandas


def test_landmark_pickle(tmp_path):
  pandas = _pandas()
  value = np.arange(36, dtype=np.float32).reshape(18, 2)
  missing = value.copy()
  missing[3] = -1
  frame = pandas.DataFrame(
    {
      "file_name": ["a.mp4", "a.mp4", "b#x.mp4"],
      "frame_number": [5, "0000002.png", 0],
      "value": [value, missing, value + 1],
    }
  )
  path = tmp_path / "taichi_test_gt.pkl"
  frame.to_pickle(path)
  table = landmark_pickles.read_landmark_table(str(path))
  assert table["landmarks"].shape == (3, 18, 2) and table["visible"].shape == (3, 18)
  by_video = landmark_pickles.read_landmark_pickle(str(path), num_landmarks=18)
  a = by_video["a.mp4"]
  np.testing.assert_array_equal(a["frame_numbers"], [2, 5])
  assert not a["visible"][0, 3] and a["visible"][0].sum() == 17 and a["visible"][1].all()
  np.testing.assert_array_equal(a["landmarks"][1], value)
  assert landmark_pickles.find_video(by_video, "a") is a
  assert landmark_pickles.find_video(by_video, "b#x.mp4") is by_video["b#x.mp4"]
  with pytest.raises(DataError, match="68"):
    landmark_pickles.read_landmark_pickle(str(path), num_landmarks=68)
  pandas.DataFrame({"file_name": ["a"], "value": [np.zeros(3)]}).to_pickle(tmp_path / "bad.pkl")
  with pytest.raises(DataError, match=r"\[L, 2\]"):
    landmark_pickles.read_landmark_table(str(tmp_path / "bad.pkl"))


def test_landmark_pickle_without_pandas(tmp_path, monkeypatch):
  path = tmp_path / "x.pkl"
  path.write_bytes(b"\x80\x04N.")
  monkeypatch.setitem(__import__("sys").modules, "pandas", None)
  with pytest.raises(DataError, match="pip install pandas"):
    landmark_pickles.read_landmark_pickle(str(path))


def test_translate_data_errors_passes_other_errors():
  with pytest.raises(tf.errors.InvalidArgumentError):
    with pipeline.translate_data_errors():
      tf.debugging.assert_equal(1, 2)


def test_augment_rotation_deg_zero_keeps_a_level_horizon(tmp_path):
  # A wall above a floor: every row is one colour. The row-median background (configs/demo.cfg)
  # is exact on such frames only while the augmentation does not tilt the horizon.
  frame = np.zeros((32, 32, 3), np.uint8)
  frame[:14] = (200, 190, 210)
  frame[14:] = (90, 50, 60)
  for v in range(2):
    path = tmp_path / "train" / f"vid{v}"
    os.makedirs(path)
    for t in range(4):
      Image.fromarray(frame).save(path / f"{t:07d}.png")

  def largest_row_spread(rotation_degrees):
    ds = pipeline.make_pair_dataset(
      str(tmp_path), "train", 32, 8, seed=0, rotation_degrees=rotation_degrees
    )
    (batch,) = _take(ds, 1)
    images = np.concatenate([batch["source"], batch["target"]])
    return float((images.max(axis=2) - images.min(axis=2)).max())

  assert largest_row_spread(0) < 1e-6
  assert largest_row_spread(10) > 0.2
