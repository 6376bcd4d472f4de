"""`python -m copart_tf.segment` and `copart_tf.apps.segmentation`: files, formats, bad input.

One tiny randomly perturbed model (K=3, 64x64) is written as a training run dir and exported
once. The command-line runs (separate Pythons) start in setUpClass and run while the in-process
tests go on.
"""

import csv
import json
import os
import shutil
import tempfile

import app_fixtures
import imageio
import numpy as np
import tensorflow as tf
from PIL import Image

from copart_tf.apps import media, segmentation, tracks
from copart_tf.errors import DataError, ModelError
from copart_tf.evaluation.report import part_palette
from copart_tf.export import saved_model as export_lib
from copart_tf.inference import Segmenter

K = 3
SIZE = 64
MP4_FRAMES = 12
MP4_FPS = 12.5
JSON_KEYS = {
  "format",
  "model",
  "model_kind",
  "model_version",
  "image_size",
  "num_parts",
  "palette",
  "input",
  "input_kind",
  "fps",
  "frame_size",
  "processed_frame_size",
  "output_frame_size",
  "coordinates",
  "part_names",
  "frames",
  "num_frames",
  "seconds",
}
FRAME_KEYS = {
  "frame",
  "time",
  "foreground_fraction",
  "centers",
  "rotation_deg",
  "scale",
  "area",
  "affines",
}


def _read_video(path):
  reader = imageio.get_reader(path)
  try:
    fps = reader.get_meta_data().get("fps")
    frames = [frame for frame in reader]
  finally:
    reader.close()
  return frames, fps


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


class SegmentTest(tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="copart_segment_test_")
    cls.run_dir = os.path.join(cls.tmp, "run")
    cls.model = app_fixtures.make_tiny_run_dir(cls.run_dir, num_parts=K, image_size=SIZE)
    cls.mp4 = app_fixtures.write_moving_shapes_video(
      os.path.join(cls.tmp, "in", "clip.mp4"), MP4_FRAMES, size=SIZE, fps=MP4_FPS
    )
    cls.folder = app_fixtures.write_moving_shapes_video(
      os.path.join(cls.tmp, "in", "odd_frames"), 5, size=37, width=50
    )
    cls.broken = os.path.join(cls.tmp, "in", "broken.mp4")
    with open(cls.broken, "w") as f:
      f.write("this is not a video\n")
    cls.not_a_model = os.path.join(cls.tmp, "not_a_model")
    os.makedirs(cls.not_a_model)
    with open(os.path.join(cls.not_a_model, "notes.txt"), "w") as f:
      f.write("hello\n")
    # Command-line runs: they start now and run while the in-process tests go on.
    cls.cli_broken = app_fixtures.start_cli(
      "copart_tf.segment",
      f"--model={cls.run_dir}",
      f"--input={cls.broken}",
      f"--output={os.path.join(cls.tmp, 'cli_broken')}",
    )
    cls.export_dir = export_lib.export(cls.model, os.path.join(cls.tmp, "export"))
    cls.cli_export = app_fixtures.start_cli(
      "copart_tf.segment",
      f"--model={os.path.dirname(cls.export_dir)}",
      f"--input={cls.mp4}",
      f"--output={os.path.join(cls.tmp, 'cli_export')}",
      "--gif",
      "--axes",
      "--legend",
      "--alpha=0.5",
      "--batch_size=5",
    )
    cls.segmenter = Segmenter.from_model(cls.model, batch_size=4, path=cls.run_dir)

  @classmethod
  def tearDownClass(cls):
    for process in (cls.cli_broken, cls.cli_export):
      if process.poll() is None:
        process.kill()
        process.communicate()
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _segment(self, input_path, name, **options):
    out_dir = os.path.join(self.tmp, name)
    warnings = []
    options.setdefault("show_progress", False)
    result = segmentation.segment_video(
      self.segmenter,
      input_path,
      out_dir,
      segmentation.SegmentOptions(**options),
      warn=warnings.append,
    )
    return out_dir, result, warnings

  def _check_tracks(self, out_dir, num_frames, frame_size):
    data = _read_json(os.path.join(out_dir, "tracks.json"))
    self.assertEqual(set(data), JSON_KEYS)
    self.assertEqual(data["format"], tracks.FORMAT)
    self.assertEqual(data["num_frames"], num_frames)
    self.assertEqual(data["image_size"], SIZE)
    self.assertEqual(data["num_parts"], K)
    self.assertEqual(data["frame_size"], list(frame_size))
    self.assertLen(data["frames"], num_frames)
    self.assertEqual(data["palette"], part_palette(K).tolist())
    for i, frame in enumerate(data["frames"]):
      self.assertEqual(set(frame), FRAME_KEYS)
      self.assertEqual(frame["frame"], i)
    self.assertEqual(np.array([f["centers"] for f in data["frames"]]).shape, (num_frames, K, 2))
    self.assertEqual(np.array([f["scale"] for f in data["frames"]]).shape, (num_frames, K, 2))
    self.assertEqual(np.array([f["rotation_deg"] for f in data["frames"]]).shape, (num_frames, K))
    self.assertEqual(np.array([f["area"] for f in data["frames"]]).shape, (num_frames, K))
    self.assertEqual(np.array([f["affines"] for f in data["frames"]]).shape, (num_frames, K, 2, 3))
    rows = _read_csv(os.path.join(out_dir, "tracks.csv"))
    self.assertLen(rows, num_frames * K)
    self.assertEqual(list(rows[0]), list(tracks.CSV_COLUMNS))
    self.assertEqual([r["name"] for r in rows[:K]], data["part_names"][1:])
    self.assertFalse(os.path.exists(os.path.join(out_dir, "tracks.json.partial")))
    return data, rows

  # ------------------------------------------------------------------ in-process

  def test_frame_folder_with_odd_size(self):
    out_dir, result, warnings = self._segment(self.folder, "odd", frames=True, gif=True)
    self.assertEqual(warnings, [])
    self.assertEqual(result["num_frames"], 5)
    data, rows = self._check_tracks(out_dir, 5, (37, 50))
    self.assertEqual(data["input_kind"], "frames")
    self.assertEqual(data["fps"], 25.0)
    self.assertEqual(data["part_names"], ["background", "part_1", "part_2", "part_3"])
    self.assertAllClose(data["frames"][1]["time"], 0.04)
    pngs = sorted(os.listdir(os.path.join(out_dir, "frames")))
    self.assertEqual(pngs, [f"{i:06d}.png" for i in range(5)])
    video, fps = _read_video(os.path.join(out_dir, "overlay.mp4"))
    self.assertLen(video, 5)
    self.assertAllClose(fps, 25.0)
    self.assertEqual(video[0].shape, (38, 50, 3))  # padded to even for H.264
    gif, _ = _read_video(os.path.join(out_dir, "overlay.gif"))
    self.assertLen(gif, 5)
    self.assertEqual(gif[0].shape[:2], (37, 50))

  def test_overlay_and_tracks_match_the_segmenter(self):
    out_dir, _, _ = self._segment(self.folder, "exact", frames=True, video=False, alpha=0.6)
    inputs = [np.asarray(Image.open(os.path.join(self.folder, f"{i:05d}.png"))) for i in range(5)]
    expected = self.segmenter.segment(np.stack(inputs))
    palette = part_palette(K)
    for i in (0, 4):
      overlay = np.asarray(Image.open(os.path.join(out_dir, "frames", f"{i:06d}.png")))
      labels = expected["part_labels"][i]
      background = labels == 0
      # Background untouched, parts blended with their palette colour.
      self.assertAllEqual(overlay[background], inputs[i][background])
      blend = 0.4 * inputs[i].astype(np.float32) + 0.6 * palette[labels].astype(np.float32)
      self.assertAllClose(overlay[~background], (blend + 0.5).astype(np.uint8)[~background], atol=1)
    data = _read_json(os.path.join(out_dir, "tracks.json"))
    centers = np.array([f["centers"] for f in data["frames"]])
    self.assertAllClose(centers, expected["part_centers"], atol=2e-3)
    affines = np.array([f["affines"] for f in data["frames"]])
    self.assertAllClose(affines, expected["part_affines"], atol=2e-4)
    area = np.array([f["area"] for f in data["frames"]])
    self.assertAllClose(area.sum(-1), expected["foreground_fraction"], atol=1e-4)

  def test_rotation_and_scale_from_poses(self):
    theta = np.radians([30.0, -120.0])
    scale = np.array([[0.5, 0.8], [1.5, 0.6]])
    cos, sin = np.cos(theta), np.sin(theta)
    linear = np.stack(
      [
        np.stack([cos * scale[:, 0], -sin * scale[:, 1]], -1),
        np.stack([sin * scale[:, 0], cos * scale[:, 1]], -1),
      ],
      -2,
    )
    affines = np.concatenate([linear, np.array([[[0.1], [-0.2]], [[0.0], [0.5]]])], -1)
    rotation, got_scale = tracks.pose_parameters(affines)
    self.assertAllClose(rotation, [30.0, -120.0])
    self.assertAllClose(got_scale, scale)
    pixels = tracks.normalized_to_pixel_affines(affines, 37, 50)
    self.assertAllClose(tracks.pixel_to_normalized_affines(pixels, 37, 50), affines, atol=1e-6)
    # Centre of the frame in normalised coordinates = ((W - 1) / 2, (H - 1) / 2) in pixels.
    self.assertAllClose(pixels[0, :, 2], [0.1 * 25 + 24.5, -0.2 * 18.5 + 18.0], atol=1e-5)

  def test_run_dir_segmenter(self):
    segmenter = Segmenter.load(self.run_dir, batch_size=2)
    out_dir = os.path.join(self.tmp, "run_dir")
    segmentation.segment_video(
      segmenter, self.folder, out_dir, segmentation.SegmentOptions(show_progress=False)
    )
    data, _ = self._check_tracks(out_dir, 5, (37, 50))
    self.assertEqual(data["model_kind"], "checkpoint")
    self.assertEqual(data["model"], os.path.abspath(self.run_dir))
    expected, _ = self._check_tracks(self._segment(self.folder, "run_dir_ref")[0], 5, (37, 50))
    self.assertAllClose(
      [f["centers"] for f in data["frames"]], [f["centers"] for f in expected["frames"]]
    )

  def test_single_image(self):
    image = os.path.join(self.tmp, "in", "one.png")
    Image.fromarray(app_fixtures.moving_shapes_frame(3, 40, 60)).save(image)
    out_dir, result, _ = self._segment(image, "image", axes=True, legend=True)
    self.assertEqual(result["num_frames"], 1)
    self.assertCountEqual(
      os.listdir(out_dir), ["overlay.png", "tracks.json", "tracks.csv", "legend.png"]
    )
    data, _ = self._check_tracks(out_dir, 1, (40, 60))
    self.assertEqual(data["input_kind"], "image")
    overlay = np.asarray(Image.open(os.path.join(out_dir, "overlay.png")))
    self.assertEqual(overlay.shape[0], 40)
    self.assertGreater(overlay.shape[1], 60)  # the legend panel is on the right
    self.assertEqual(data["output_frame_size"], list(overlay.shape[:2]))

  def test_huge_frames_are_downscaled_with_a_warning(self):
    image = os.path.join(self.tmp, "in", "huge.png")
    Image.fromarray(app_fixtures.moving_shapes_frame(0, 60, 2100)).save(image)
    out_dir, _, warnings = self._segment(image, "huge")
    self.assertLen(warnings, 1)
    self.assertIn("--max_side=2048", warnings[0])
    overlay = np.asarray(Image.open(os.path.join(out_dir, "overlay.png")))
    self.assertEqual(overlay.shape, (59, 2048, 3))
    data = _read_json(os.path.join(out_dir, "tracks.json"))
    self.assertEqual(data["frame_size"], [60, 2100])
    self.assertEqual(data["processed_frame_size"], [59, 2048])
    # Tracks are in input pixels: the same normalised pose as the model's, scaled to 2100 x 60.
    small = self.segmenter.segment(media.resize_frame(np.asarray(Image.open(image)), 59, 2048))
    norm = tracks.pixel_to_normalized_affines(small["part_affines"][0], 59, 2048)
    expected = tracks.normalized_to_pixel_affines(norm, 60, 2100)
    self.assertAllClose(np.array(data["frames"][0]["affines"]), expected, atol=2e-3)

  def test_bad_inputs(self):
    empty = os.path.join(self.tmp, "in", "empty_folder")
    os.makedirs(empty)
    zero = os.path.join(self.tmp, "in", "zero.mp4")
    open(zero, "wb").close()
    cases = {
      self.broken: "cannot",
      empty: "no png/jpg frames",
      zero: "empty file",
      os.path.join(self.tmp, "missing.mp4"): "does not exist",
      os.path.join(self.tmp, "in", "odd_frames", "00000.png.txt"): "does not exist",
    }
    for path, message in cases.items():
      with self.subTest(path=path):
        with self.assertRaisesRegex(DataError, message):
          self._segment(path, "bad")
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "bad", "tracks.json")))
    # A folder that is neither a run dir nor an export, an empty one, a file.
    for path in (self.not_a_model, os.path.join(self.tmp, "in", "empty_folder"), self.broken):
      with self.subTest(path=path):
        with self.assertRaisesRegex(ModelError, os.path.basename(path)):
          Segmenter.load(path)
    # A run dir whose checkpoint does not fit its config (K=3 weights, K=5 config).
    wrong = os.path.join(self.tmp, "wrong_run")
    shutil.copytree(self.run_dir, wrong)
    with open(os.path.join(wrong, "config.json")) as f:
      config = json.load(f)
    with open(os.path.join(wrong, "config.json"), "w") as f:
      json.dump(dict(config, num_parts=5), f)
    with self.assertRaisesRegex(ModelError, "does not match"):
      Segmenter.load(wrong)

  def test_options_are_validated(self):
    for options, message in (
      ({"alpha": 1.5}, "--alpha"),
      ({"batch_size": 0}, "--batch_size"),
      ({"fps": -1.0}, "--fps"),
    ):
      with self.subTest(options=options):
        with self.assertRaisesRegex(Exception, message):
          self._segment(self.folder, "options", **options)

  # ------------------------------------------------------------------ command line

  def test_cli_with_export(self):
    code, out, err = app_fixtures.finish_cli(self.cli_export)
    self.assertEqual(code, 0, err[-3000:])
    out_dir = os.path.join(self.tmp, "cli_export")
    self.assertIn("segmented 12 frames", out)
    data, _ = self._check_tracks(out_dir, MP4_FRAMES, (SIZE, SIZE))
    self.assertEqual(data["model_kind"], "saved_model")
    self.assertEqual(data["model_version"], 1)
    self.assertEqual(data["fps"], MP4_FPS)
    self.assertEqual(data["input_kind"], "video")
    video, fps = _read_video(os.path.join(out_dir, "overlay.mp4"))
    self.assertLen(video, MP4_FRAMES)
    self.assertAllClose(fps, MP4_FPS)
    self.assertEqual(video[0].shape[:2], tuple(data["output_frame_size"]))
    self.assertGreater(video[0].shape[1], SIZE)  # legend
    gif, _ = _read_video(os.path.join(out_dir, "overlay.gif"))
    self.assertLen(gif, MP4_FRAMES)
    self.assertTrue(os.path.isfile(os.path.join(out_dir, "legend.png")))
    # Same model as the checkpoint: the SavedModel's tracks match the in-memory segmenter's.
    frames = [frame for frame in media.open_input(self.mp4)]
    expected = self.segmenter.segment(np.stack(frames))
    centers = np.array([f["centers"] for f in data["frames"]])
    self.assertAllClose(centers, expected["part_centers"], atol=2e-3)

  def _check_error(self, process, message):
    code, _, err = app_fixtures.finish_cli(process)
    self.assertEqual(code, 2, err[-3000:])
    self.assertNotIn("Traceback", err)
    last = err.strip().splitlines()[-1]
    self.assertStartsWith(last, "error: ")
    self.assertIn(message, last)

  def test_cli_unreadable_video(self):
    self._check_error(self.cli_broken, "broken.mp4")

  def test_cli_missing_flags(self):
    process = app_fixtures.start_cli("copart_tf.segment", f"--input={self.mp4}")
    self._check_error(process, "--model is required")
    process = app_fixtures.start_cli("copart_tf.segment", "--alpha=x")
    self._check_error(process, "alpha")


if __name__ == "__main__":
  tf.test.main()
