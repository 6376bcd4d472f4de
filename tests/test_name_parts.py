"""`python -m copart_tf.name_parts` and `copart_tf.apps.naming`: validation, the majority-mapping
names, and names travelling run dir -> Segmenter -> export -> segment's tracks.

A tiny randomly perturbed model (K=3, 64x64) is written as a run dir; a small labelled dataset of
moving shapes (GT parts: the shapes, recognisable by their exact colours) is written in the FOMM
layout with the ground-truth side-car.
"""

import csv
import json
import os
import shutil
import tempfile

import app_fixtures
import numpy as np
import tensorflow as tf
from PIL import Image

from copart_tf.apps import naming, segmentation
from copart_tf.data import ground_truth
from copart_tf.errors import ConfigError, DataError
from copart_tf.export import saved_model as export_lib
from copart_tf.inference import Segmenter
from copart_tf.model import loading

K = 3
SIZE = 64
NAMES = ["head", "torso", "left arm"]
GT_NAMES = ["background", "disk", "box", "bar"]
COLOURS = {1: (230, 200, 40), 2: (40, 160, 220), 3: (200, 60, 90)}  # moving_shapes_frame's


def _gt_parts(frame):
  parts = np.zeros(frame.shape[:2], np.uint8)
  for label, colour in COLOURS.items():
    parts[np.all(frame == colour, axis=-1)] = label
  return parts


def write_labelled_dataset(root, videos=2, frames=4):
  """FOMM layout + labels/train/<video>.npz; GT parts from the shapes' colours."""
  for v in range(videos):
    folder = os.path.join(root, "train", f"video{v}")
    os.makedirs(folder)
    parts = []
    for t in range(frames):
      frame = app_fixtures.moving_shapes_frame(7 * v + 3 * t, SIZE, SIZE)
      Image.fromarray(frame).save(os.path.join(folder, f"{t:05d}.png"))
      parts.append(_gt_parts(frame))
    parts = np.stack(parts)
    ground_truth.write_ground_truth(
      os.path.join(root, "labels", "train", f"video{v}.npz"),
      parts=parts,
      links=parts,
      landmarks=np.zeros([frames, 1, 2], np.float32),
      visible=np.zeros([frames, 1], bool),
      part_names=GT_NAMES,
      link_names=GT_NAMES,
      landmark_names=["centre"],
    )


def colour_predictor(images):
  """Learned labels: the disk split in two (1/3 of columns -> part 1, the rest -> part 2), the box
  -> part 3, the bar -> nothing; part 4 = the top-left corner (GT background)."""
  labels = np.zeros(images.shape[:3], np.int32)
  columns = np.arange(images.shape[2])[None, None, :]
  disk = np.all(images == COLOURS[1], axis=-1)
  labels[disk & (columns % 3 == 0)] = 1
  labels[disk & (columns % 3 != 0)] = 2
  labels[np.all(images == COLOURS[2], axis=-1)] = 3
  labels[:, :6, :6] = 4
  return labels


class NamingTest(tf.test.TestCase):
  def test_validate_names(self):
    self.assertEqual(
      naming.parse_names(" head, torso ,arm", 3), ["background", "head", "torso", "arm"]
    )
    for text, message in (
      ("a,b", "--names has 2 names but the model has K=3 parts"),
      ("a,b,c,d", "has 4 names.*background is implied"),
      ("a,,c", "name 2 is empty"),
      ("a,b,a", "duplicate names \\['a'\\]"),
      ("Background,b,c", "reserved"),
      ("a,b\nx,c", "control characters"),
    ):
      with self.subTest(text=text):
        with self.assertRaisesRegex(ConfigError, message):
          naming.parse_names(text, 3)

  def test_names_from_mapping(self):
    # Learned parts 1..5; GT: background, torso, head.
    confusion = np.array(
      [
        [90, 5, 5],
        [10, 40, 0],  # -> torso (40)
        [5, 70, 3],  # -> torso (70, more): plain name
        [20, 1, 2],  # -> background
        [0, 0, 0],  # never seen -> background
        [1, 2, 30],  # -> head
      ]
    )
    mapping = [0, 1, 1, 0, 0, 2]
    names = naming.names_from_mapping(mapping, confusion, ["background", "torso", "head"])
    self.assertEqual(
      names, ["background", "torso_2", "torso", "background_3", "background_4", "head"]
    )

  def test_names_from_labels(self):
    root = os.path.join(self.get_temp_dir(), "data")
    write_labelled_dataset(root)
    result = naming.names_from_labels(colour_predictor, root, "train", SIZE, 4, batch_size=3)
    self.assertEqual(result["frames"], 8)
    self.assertEqual(result["gt_names"], GT_NAMES)
    self.assertEqual(result["mapping"].tolist(), [0, 1, 1, 2, 0])
    # Part 2 holds 2/3 of the disk: it gets the plain name.
    self.assertEqual(result["names"], ["background", "disk_2", "disk", "box", "background_4"])
    self.assertAllClose(result["overlap"][1:4], [1.0, 1.0, 1.0])
    with self.assertRaisesRegex(DataError, "test is missing"):
      naming.names_from_labels(colour_predictor, root, "test", SIZE, 4)
    table = naming.format_mapping(result)
    self.assertIn("disk_2", table)
    self.assertLen(table.splitlines(), 5)


class NamesTravelTest(tf.test.TestCase):
  """name_parts -> run dir -> Segmenter / export -> segment's JSON and CSV."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(prefix="copart_name_parts_test_")
    cls.run_dir = os.path.join(cls.tmp, "run")
    app_fixtures.make_tiny_run_dir(cls.run_dir, num_parts=K, image_size=SIZE)
    cls.base = os.path.join(cls.tmp, "exports")
    cls.fake_export = os.path.join(cls.tmp, "fake_export")
    os.makedirs(os.path.join(cls.fake_export, "3"))
    open(os.path.join(cls.fake_export, "3", "saved_model.pb"), "wb").close()
    cls.data = os.path.join(cls.tmp, "data")
    write_labelled_dataset(cls.data)
    cls.cli_names = app_fixtures.start_cli(
      "copart_tf.name_parts",
      f"--model={cls.run_dir}",
      f"--names={','.join(NAMES)}",
      f"--export_base={cls.base}",
    )
    cls.cli_labels = app_fixtures.start_cli(
      "copart_tf.name_parts",
      f"--model={cls.run_dir}",
      f"--from_labels={cls.data}",
      "--dry_run",
    )

  @classmethod
  def tearDownClass(cls):
    for process in (cls.cli_names, cls.cli_labels):
      if process.poll() is None:
        process.kill()
        process.communicate()
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def test_names_travel(self):
    code, out, err = app_fixtures.finish_cli(self.cli_names)
    self.assertEqual(code, 0, err[-3000:])
    expected = ["background"] + NAMES
    self.assertIn("part names: background, head, torso, left arm", out)
    with open(os.path.join(self.run_dir, loading.PART_NAMES_FILE)) as f:
      self.assertEqual(json.load(f), expected)
    # The run dir.
    self.assertEqual(Segmenter.load(self.run_dir).part_names, expected)
    # The new export version.
    self.assertEqual(export_lib.list_versions(self.base), [1])
    self.assertIn(f"exported {os.path.join(self.base, '1')}", out)
    exported = Segmenter.load(self.base)
    self.assertEqual(exported.version, 1)
    self.assertEqual(exported.part_names, expected)
    with open(os.path.join(self.base, "1", "assets", "part_names.txt")) as f:
      self.assertEqual(f.read().splitlines(), expected)
    # segment's outputs.
    out_dir = os.path.join(self.tmp, "segment")
    segmentation.segment_video(
      exported,
      os.path.join(self.data, "train", "video0"),
      out_dir,
      segmentation.SegmentOptions(legend=True, show_progress=False),
    )
    with open(os.path.join(out_dir, "tracks.json")) as f:
      self.assertEqual(json.load(f)["part_names"], expected)
    with open(os.path.join(out_dir, "tracks.csv"), newline="") as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r["name"] for r in rows[:K]], NAMES)

  def test_from_labels_dry_run(self):
    code, out, err = app_fixtures.finish_cli(self.cli_labels)
    self.assertEqual(code, 0, err[-3000:])
    self.assertIn("majority mapping on 8 frames", out)
    self.assertIn("dry run: nothing written", out)
    names = out.split("part names: ", 1)[1].splitlines()[0].split(", ")
    self.assertLen(names, K + 1)
    self.assertEqual(names[0], "background")
    self.assertLen(set(names), K + 1)
    for name in names[1:]:
      self.assertRegex(name, r"^(background_\d|(disk|box|bar)(_\d)?)$")

  def test_cli_errors(self):
    cases = [
      (["--model=" + self.run_dir, "--names=a,b"], "--names has 2 names but the model has K=3"),
      (["--model=" + self.run_dir], "exactly one of --names"),
      (["--model=" + self.fake_export, "--names=a,b,c"], "looks like an export"),
      (["--model=" + os.path.join(self.tmp, "none"), "--names=a,b,c"], "no such directory"),
    ]
    processes = [(app_fixtures.start_cli("copart_tf.name_parts", *args), m) for args, m in cases]
    for process, message in processes:
      code, _, err = app_fixtures.finish_cli(process)
      with self.subTest(message=message):
        self.assertEqual(code, 2, err[-2000:])
        self.assertNotIn("Traceback", err)
        last = err.strip().splitlines()[-1]
        self.assertStartsWith(last, "error: ")
        self.assertIn(message, last)


if __name__ == "__main__":
  tf.test.main()
