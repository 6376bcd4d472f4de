"""Tests of copart_tf.data.video_io and the FOMM layout scan (copart_tf.data.layout)."""

import os

import imageio
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from copart_tf.data import layout, video_io
from copart_tf.errors import ConfigError, DataError

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220)]


def _colour_frames(num, size=32):
  return [np.full((size, size, 3), COLORS[i % len(COLORS)], np.uint8) for i in range(num)]


def _write_mp4(path, frames, fps=10):
  imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)


def _write_gif(path, frames, duration_ms=100):
  imageio.mimwrite(path, frames, duration=duration_ms, loop=0)


def test_read_image_modes(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(tmp_path / "rgb.png")
  Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
  Image.fromarray(np.dstack([rgb, np.full((6, 7, 1), 9, np.uint8)])).save(tmp_path / "rgba.png")
  gray16 = (np.arange(42).reshape(6, 7) * 1500).astype(np.uint16)
  Image.fromarray(gray16).save(tmp_path / "gray16.png")
  rgb16 = rgb.astype(np.uint16) * 257
  tf.io.write_file(str(tmp_path / "rgb16.png"), tf.io.encode_png(rgb16))

  np.testing.assert_array_equal(video_io.read_image(str(tmp_path / "rgb.png")), rgb)
  gray = video_io.read_image(str(tmp_path / "gray.png"))
  assert gray.shape == (6, 7, 3) and gray.dtype == np.uint8
  np.testing.assert_array_equal(gray, np.repeat(rgb[:, :, :1], 3, axis=2))
  np.testing.assert_array_equal(video_io.read_image(str(tmp_path / "rgba.png")), rgb)
  g16 = video_io.read_image(str(tmp_path / "gray16.png"))
  np.testing.assert_allclose(g16[..., 1], gray16 / 257.0, atol=1)
  np.testing.assert_array_equal(video_io.read_image(str(tmp_path / "rgb16.png")), rgb)


def test_read_image_bad_files_name_the_file(tmp_path):
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "junk.png").write_bytes(b"not an image at all")
  for name in ("empty.png", "junk.png", "missing.png"):
    path = str(tmp_path / name)
    with pytest.raises(DataError, match=name):
      video_io.read_image(path)
  assert video_io.check_image_file(str(tmp_path / "junk.png")) is not None


def test_to_rgb_uint8():
  assert video_io.to_rgb_uint8(np.zeros((3, 4), np.uint8)).shape == (3, 4, 3)
  la = np.dstack([np.full((2, 2), 7, np.uint8), np.full((2, 2), 255, np.uint8)])
  np.testing.assert_array_equal(video_io.to_rgb_uint8(la), np.full((2, 2, 3), 7))
  np.testing.assert_array_equal(
    video_io.to_rgb_uint8(np.full((1, 1, 3), 65535, np.uint16)), np.full((1, 1, 3), 255)
  )
  with pytest.raises(DataError):
    video_io.to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))


def test_mp4_random_access_and_bounded_cache(tmp_path):
  path = str(tmp_path / "clip.mp4")
  frames = _colour_frames(12)
  _write_mp4(path, frames, fps=10)
  assert video_io.count_video_frames(path) == 12
  video = video_io.VideoFile(path)
  try:
    assert video.fps == pytest.approx(10.0)
    assert video.num_frames == 12
    for i in (5, 2, 11, 0, 7, 7):  # backwards and forwards
      frame = video.read(i)
      assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
      np.testing.assert_allclose(frame[16, 16], COLORS[i % 5], atol=12)
      assert len(video._cache) <= video_io.VideoFile.CACHE_FRAMES
    with pytest.raises(DataError, match="out of range"):
      video.read(12)
  finally:
    video.close()


def test_gif_reading(tmp_path):
  path = str(tmp_path / "clip.gif")
  _write_gif(path, _colour_frames(6), duration_ms=50)
  video = video_io.VideoFile(path)
  assert video.num_frames == 6
  assert video.fps == pytest.approx(20.0)
  for i in (4, 1, 5):
    np.testing.assert_allclose(video.read(i)[3, 3], COLORS[i % 5], atol=3)
  video.close()
  assert video_io.count_video_frames(path) == 6


def test_read_video_frames_pool(tmp_path):
  path = str(tmp_path / "clip.mp4")
  _write_mp4(path, _colour_frames(10))
  first, last, middle = video_io.read_video_frames(path, [0.0, 0.999, 0.5])
  np.testing.assert_allclose(first[0, 0], COLORS[0], atol=12)
  np.testing.assert_allclose(last[0, 0], COLORS[9 % 5], atol=12)
  np.testing.assert_allclose(middle[0, 0], COLORS[5 % 5], atol=12)
  video_io.close_video_readers()
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"garbage" * 50)
  with pytest.raises(DataError, match="bad.mp4"):
    video_io.read_video_frames(str(bad), [0.0])


def test_reader_pool_concurrent_eviction(tmp_path):
  """Many threads over more videos than pool slots: readers get evicted while others wait."""
  import concurrent.futures

  paths = []
  for v in range(3):
    path = str(tmp_path / f"v{v}.gif")
    _write_gif(path, [np.full((8, 8, 3), COLORS[v], np.uint8)] * 4)
    paths.append(path)
  pool = video_io._ReaderPool(size=1)

  def work(k):
    v = k % 3
    (frame,) = pool.read(paths[v], [(k % 4) / 4])
    return np.abs(frame[0, 0].astype(int) - COLORS[v]).max()

  with concurrent.futures.ThreadPoolExecutor(6) as ex:
    errors = list(ex.map(work, range(60)))
  pool.clear()
  assert max(errors) <= 3


@pytest.mark.parametrize("kind", ["folder", "mp4", "gif", "strip"])
def test_iterate_video_frames(tmp_path, kind):
  frames = _colour_frames(5, size=16)
  if kind == "folder":
    path = tmp_path / "video.mp4"  # a frame folder named like a file
    path.mkdir()
    for i, f in enumerate(frames):
      Image.fromarray(f).save(path / f"{i:07d}.png")
  elif kind == "mp4":
    path = tmp_path / "video.mp4"
    _write_mp4(str(path), frames, fps=5)
  elif kind == "gif":
    path = tmp_path / "video.gif"
    _write_gif(str(path), frames, duration_ms=200)
  else:
    path = tmp_path / "video.png"
    Image.fromarray(np.concatenate(frames, axis=1)).save(path)
  stream = video_io.iterate_video_frames(str(path))
  expected_fps = {"mp4": 5.0, "gif": 5.0}.get(kind, video_io.DEFAULT_FPS)
  assert stream.fps == pytest.approx(expected_fps)
  assert stream.num_frames == 5
  out = list(stream)
  stream.close()
  assert len(out) == 5
  for i, frame in enumerate(out):
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8
    np.testing.assert_allclose(frame[8, 8], COLORS[i], atol=12 if kind == "mp4" else 3)


def test_iterate_video_frames_errors(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    video_io.iterate_video_frames(str(tmp_path / "nope.mp4"))
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(DataError, match="not a video"):
    video_io.iterate_video_frames(str(tmp_path / "notes.txt"))
  Image.fromarray(np.zeros((4, 10, 3), np.uint8)).save(tmp_path / "strip.png")
  with pytest.raises(DataError, match="multiple of height"):
    video_io.iterate_video_frames(str(tmp_path / "strip.png"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="no png/jpg frames"):
    video_io.iterate_video_frames(str(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------
# Layout scan


def _frame_folder(path, num=3, size=8, value=100):
  os.makedirs(path, exist_ok=True)
  for i in range(num):
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(os.path.join(path, f"{i}.png"))


def test_scan_kinds_and_names(tmp_path):
  train = tmp_path / "train"
  _frame_folder(train / "id1#abc#0#10.mp4", num=4)
  _write_mp4(str(train / "id2#x.mp4"), _colour_frames(3))
  _write_gif(str(train / "id2#y.gif"), _colour_frames(2))
  Image.fromarray(np.zeros((8, 24, 3), np.uint8)).save(train / "strip.jpg")
  (train / "README.txt").write_text("ignored")
  (train / ".DS_Store").write_bytes(b"ignored")
  (tmp_path / "test").mkdir()
  entries = layout.scan_split(str(tmp_path), "train")
  by_name = {e.name: e for e in entries}
  assert set(by_name) == {"id1#abc#0#10.mp4", "id2#x", "id2#y", "strip"}
  assert by_name["id1#abc#0#10.mp4"].kind == "frames"
  assert by_name["id1#abc#0#10.mp4"].num_frames == 4
  assert by_name["id1#abc#0#10.mp4"].identity == "id1"
  assert by_name["id2#x"].kind == "video" and by_name["id2#x"].identity == "id2"
  assert by_name["id2#y"].num_frames == 2
  assert by_name["strip"].kind == "strip" and by_name["strip"].num_frames == 3


def test_scan_missing_and_empty(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    layout.scan_split(str(tmp_path / "nope"), "train")
  (tmp_path / "train").mkdir()
  with pytest.raises(DataError, match="test is missing"):
    layout.scan_split(str(tmp_path), "test")
  with pytest.raises(DataError, match="no videos"):
    layout.scan_split(str(tmp_path), "train")
  with pytest.raises(ConfigError, match="on_bad_frame"):
    layout.scan_split(str(tmp_path), "train", on_bad_frame="ignore")


def test_auto_split_80_20_is_fixed(tmp_path):
  for v in range(10):
    _frame_folder(tmp_path / f"vid{v}", num=1)
  (tmp_path / "labels").mkdir()  # never a video
  (tmp_path / "meta.json").write_text("{}")
  train = [e.name for e in layout.scan_split(str(tmp_path), "train")]
  test = [e.name for e in layout.scan_split(str(tmp_path), "test")]
  assert len(train) == 8 and len(test) == 2
  assert not set(train) & set(test)
  assert train == [e.name for e in layout.scan_split(str(tmp_path), "train")]


def test_scan_bad_videos_fail_and_skip(tmp_path, caplog):
  train = tmp_path / "train"
  _frame_folder(train / "good", num=2)
  (train / "empty_folder").mkdir()
  with pytest.raises(DataError, match="empty_folder"):
    layout.scan_split(str(tmp_path), "train")
  with caplog.at_level("WARNING"):
    entries = layout.scan_split(str(tmp_path), "train", on_bad_frame="skip")
  assert [e.name for e in entries] == ["good"]
  assert "empty_folder" in caplog.text

  (train / "empty_folder").rmdir()
  (train / "junk").mkdir()
  (train / "junk" / "0.png").write_bytes(b"definitely not a png")
  with pytest.raises(DataError, match=r"junk/0\.png"):
    layout.scan_split(str(tmp_path), "train")
  (train / "zero.mp4").write_bytes(b"")
  with pytest.raises(DataError):
    layout.scan_split(str(tmp_path), "train")
  entries = layout.scan_split(str(tmp_path), "train", on_bad_frame="skip")
  # The junk frame folder is kept (frames are substituted when read); the empty file is dropped.
  assert sorted(e.name for e in entries) == ["good", "junk"]


def test_scan_corrupt_video_file_fails_fast(tmp_path):
  train = tmp_path / "train"
  _frame_folder(train / "good", num=2)
  (train / "broken.mp4").write_bytes(b"garbage" * 64)
  with pytest.raises(DataError, match="broken.mp4"):
    layout.scan_split(str(tmp_path), "train")


def test_ground_truth_path(tmp_path):
  _frame_folder(tmp_path / "train" / "a.mp4", num=1)
  _frame_folder(tmp_path / "train" / "b", num=1)
  labels = tmp_path / "labels" / "train"
  labels.mkdir(parents=True)
  (labels / "a.npz").write_bytes(b"")
  entries = {e.name: e for e in layout.scan_split(str(tmp_path), "train")}
  assert layout.ground_truth_path(str(tmp_path), "train", entries["a.mp4"]) == str(labels / "a.npz")
  assert layout.ground_truth_path(str(tmp_path), "train", entries["b"]) is None
