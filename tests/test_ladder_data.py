"""Numpy-only "quality ladder" datasets (sprites, figure2d): layout, labels vs colours, poses vs
label moments, determinism, foreground fraction, reading back through the pipeline, dispatch."""

import colorsys
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from parameterized import parameterized
from PIL import Image

from copart_tf import synthetic
from copart_tf.data import ground_truth as gt_lib
from copart_tf.errors import ConfigError, DataError
from copart_tf.synthetic import figure2d, sprites

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
FRAMES = 6
SEED = 3
GENERATORS = {
  "sprites": sprites.synthesize_sprites_dataset,
  "figure2d": figure2d.synthesize_figure2d_dataset,
}
COUNTS = {"sprites": (4, 2), "figure2d": (2, 1)}


def _tree_bytes(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def _videos(root):
  """(split, name, frames uint8 [T, S, S, 3], side-car dict incl. extras, meta info) per video."""
  with open(os.path.join(root, "meta.json"), encoding="utf-8") as f:
    meta = json.load(f)
  out = []
  for split in ("train", "test"):
    for info in meta["videos"][split]:
      name = info["name"]
      folder = os.path.join(root, split, name)
      frames = np.stack(
        [np.asarray(Image.open(os.path.join(folder, f))) for f in sorted(os.listdir(folder))]
      )
      path = os.path.join(root, "labels", split, name + ".npz")
      gt = gt_lib.read_ground_truth(path, num_frames=len(frames), image_size=frames.shape[1])
      gt.update(gt_lib.read_extra(path))
      out.append((split, name, frames, gt, info))
  return out


def _interior(labels):
  """Pixels whose 8 neighbours all carry the same label (away from edges and the frame border).

  Border pixels never count: a shape's edge can cross a border pixel beyond its centre, where no
  neighbour's label shows it.
  """
  pad = np.pad(labels.astype(np.int32), 1, constant_values=-1)
  same = np.ones(labels.shape, bool)
  h, w = labels.shape
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      same &= pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == labels
  return same


def _pose_in_pixels(pose, size):
  """[2, 3] normalised pose -> (centre (x, y) in pixels, covariance A A^T in pixels^2)."""
  centre = ((pose[:, 2] + 1.0) * size - 1.0) / 2.0
  a = pose[:, :2] * size / 2.0
  return centre, a @ a.T


class LadderDataTest(unittest.TestCase):
  @classmethod
  def setUpClass(cls):
    cls._tmp = tempfile.TemporaryDirectory()
    cls.roots = {}
    for name, fn in GENERATORS.items():
      root = os.path.join(cls._tmp.name, name)
      train, test = COUNTS[name]
      fn(root, train_videos=train, test_videos=test, frames=FRAMES, size=SIZE, seed=SEED)
      cls.roots[name] = root
    cls.videos = {name: _videos(root) for name, root in cls.roots.items()}

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()

  def setUp(self):
    self._case_tmp = tempfile.TemporaryDirectory()
    self.tmp = self._case_tmp.name

  def tearDown(self):
    self._case_tmp.cleanup()

  # --- layout -----------------------------------------------------------------------------------
  @parameterized.expand([("sprites",), ("figure2d",)])
  def test_layout(self, name):
    root = self.roots[name]
    train, test = COUNTS[name]
    self.assertTrue(os.path.isfile(os.path.join(root, "meta.json")))
    self.assertTrue(os.path.isfile(os.path.join(root, "contact_sheet.png")))
    self.assertFalse([f for f in os.listdir(self._tmp.name) if f.startswith(".")])  # no partials
    for split, count in (("train", train), ("test", test)):
      videos = sorted(os.listdir(os.path.join(root, split)))
      self.assertEqual(len(videos), count)
      labels = sorted(os.listdir(os.path.join(root, "labels", split)))
      self.assertEqual(labels, [v + ".npz" for v in videos])
      for i, video in enumerate(videos):
        self.assertRegex(video, rf"^{i:05d}_(sprites[1-4]|figure)$")
        files = sorted(os.listdir(os.path.join(root, split, video)))
        self.assertEqual(files, [f"{t:05d}.png" for t in range(FRAMES)])
        image = Image.open(os.path.join(root, split, video, files[0]))
        self.assertEqual((image.mode, image.size), ("RGB", (SIZE, SIZE)))

  def test_side_car_contents(self):
    for name, num_parts, num_landmarks in (("sprites", 4, 4), ("figure2d", 10, 14)):
      for _, _, _, gt, _ in self.videos[name]:
        self.assertEqual(gt["num_parts"], num_parts)
        self.assertEqual(gt["part_names"][0], "background")
        self.assertEqual(gt["link_names"], gt["part_names"])
        np.testing.assert_array_equal(gt["links"], gt["parts"])
        self.assertEqual(gt["landmarks"].shape, (FRAMES, num_landmarks, 2))
        self.assertEqual(gt["poses"].shape, (FRAMES, num_parts, 2, 3))
        self.assertEqual(gt["poses"].dtype, np.float32)
        self.assertEqual(gt["pose_visible"].shape, (FRAMES, num_parts))
        self.assertEqual(gt["visible_fraction"].shape, (FRAMES, num_parts))
    self.assertEqual(
      self.videos["figure2d"][0][3]["part_names"][1:],
      [
        "torso",
        "head",
        "left_upper_arm",
        "right_upper_arm",
        "left_lower_arm",
        "right_lower_arm",
        "left_thigh",
        "right_thigh",
        "left_shin",
        "right_shin",
      ],
    )

  # --- labels vs colours ------------------------------------------------------------------------
  @parameterized.expand([("sprites",), ("figure2d",)])
  def test_labels_match_colours(self, name):
    for _, video, frames, gt, info in self.videos[name]:
      if name == "sprites":
        part_colors = info["colors"]  # one per shape id present
      else:
        part_colors = [info["colors"][n] for n in gt["part_names"][1:]]
      colors = np.array([info["background"]] + part_colors, np.uint8)
      # Distinct colours, background included.
      dist = np.linalg.norm(colors[:, None].astype(float) - colors[None].astype(float), axis=-1)
      self.assertGreater((dist + np.eye(len(colors)) * 1e9).min(), 60.0, video)
      exact = total = 0
      for t in range(FRAMES):
        labels = gt["parts"][t]
        interior = _interior(labels)
        expected = colors[labels]
        match = np.all(frames[t] == expected, axis=-1)
        exact += np.count_nonzero(match & interior)
        total += np.count_nonzero(interior)
        # Every labelled part shows up with its colour somewhere in the frame.
        for k in np.unique(labels[interior]):
          self.assertTrue(np.any(match & interior & (labels == k)), (video, t, k))
      self.assertGreater(total, 0.5 * FRAMES * SIZE * SIZE)
      self.assertGreaterEqual(exact / total, 0.995, video)

  def test_edges_are_anti_aliased(self):
    _, _, frames, gt, info = self.videos["sprites"][0]
    colors = np.array([info["background"]] + info["colors"], np.uint8)
    mixed = ~np.any(np.all(frames[..., None, :] == colors[None, None, None], axis=-1), axis=-1)
    self.assertGreater(np.count_nonzero(mixed), 10)  # blended edge pixels exist
    self.assertFalse(np.any(mixed & np.stack([_interior(p) for p in gt["parts"]])))

  # --- poses ------------------------------------------------------------------------------------
  def _check_pose_against_pixels(self, pose, mask, where):
    count, centroid, cov = sprites.label_moments(mask.astype(np.uint8), 1)
    self.assertGreater(count, 0, where)
    centre, cov_pose = _pose_in_pixels(pose, SIZE)
    self.assertLess(np.linalg.norm(centroid - centre), 1.0, where)
    err = np.linalg.norm(cov - cov_pose)
    self.assertLess(err, 0.12 * np.linalg.norm(cov_pose) + 0.5, (where, cov, cov_pose))

  def test_sprite_poses_match_label_moments(self):
    checked = 0
    for _, video, _, gt, info in self.videos["sprites"]:
      n = info["num_shapes"]
      for t in range(FRAMES):
        for k in range(4):
          pose = gt["poses"][t, k]
          if k >= n:  # absent shape: identity, invisible, never labelled
            np.testing.assert_array_equal(pose, np.eye(2, 3))
            self.assertFalse(gt["pose_visible"][t, k] or gt["visible"][t, k])
            self.assertFalse(np.any(gt["parts"][t] == k + 1))
            continue
          centre, _ = _pose_in_pixels(pose, SIZE)
          np.testing.assert_allclose(gt["landmarks"][t, k], centre, atol=1e-3)
          if 0.97 <= gt["visible_fraction"][t, k] <= 1.03:  # unoccluded and inside the frame
            self._check_pose_against_pixels(pose, gt["parts"][t] == k + 1, (video, t, k))
            checked += 1
    self.assertGreater(checked, 20)

  def test_figure_poses_match_label_moments(self):
    checked = 0
    for _, video, _, gt, _ in self.videos["figure2d"]:
      for t in range(FRAMES):
        for k in range(10):
          if 0.97 <= gt["visible_fraction"][t, k] <= 1.03:
            self._check_pose_against_pixels(gt["poses"][t, k], gt["parts"][t] == k + 1, video)
            checked += 1
    self.assertGreater(checked, 10)

  def test_figure_poses_match_each_part_rendered_alone(self):
    """Every part, occluded or not: the pose in the file vs the part's own mask."""
    _, video, _, gt, _ = self.videos["figure2d"][0]
    regenerated = figure2d.render_figure_video(sprites.video_rng(SEED, 0, 0), FRAMES, SIZE)
    np.testing.assert_array_equal(regenerated["parts"], gt["parts"])
    for t in range(FRAMES):
      for name, shape in regenerated["shapes"][t].items():
        k = figure2d.PART_ID[name] - 1
        _, alone = sprites.render_shapes([shape], [[255, 255, 255]], [1], [0, 0, 0], SIZE, 1)
        self._check_pose_against_pixels(gt["poses"][t, k], alone == 1, (video, t, name))
        self.assertTrue(gt["pose_visible"][t, k] == (np.count_nonzero(gt["parts"][t] == k + 1) > 0))

  def test_figure_landmarks(self):
    for _, video, _, gt, _ in self.videos["figure2d"]:
      self.assertEqual(gt["landmark_names"], figure2d.LANDMARK_NAMES)
      marks = gt["landmarks"]
      self.assertTrue(np.all((marks > -0.5) & (marks < SIZE - 0.5)), video)
      self.assertGreater(gt["visible"].mean(), 0.7)
      # A visible joint lies on one of the parts meeting there.
      for t in range(FRAMES):
        for j, name in enumerate(figure2d.LANDMARK_NAMES):
          x, y = np.floor(marks[t, j] + 0.5).astype(int)
          label = gt["parts"][t, y, x]
          allowed = [figure2d.PART_ID[p] for p in figure2d.LANDMARKS[name]]
          self.assertEqual(bool(gt["visible"][t, j]), label in allowed, (video, t, name))

  @parameterized.expand(
    [
      ("ellipse", 9.0, 4.0),
      ("rectangle", 8.0, 3.0),
      ("capsule", 10.0, 3.0),
      ("capsule", 6.0, 5.0),
    ]
  )
  def test_analytic_moments(self, kind, a, b):
    shape = sprites.Shape(kind, 50.3, 50.7, 0.4, a, b)
    step = 0.05
    xs = np.arange(0.0, 100.0, step)
    mask = sprites.shape_inside(shape, xs, xs)
    ys_i, xs_i = np.nonzero(mask)
    pts = np.stack([xs[xs_i], xs[ys_i]], axis=1)
    area, _, _ = sprites.shape_moments(kind, a, b)
    self.assertAlmostEqual(len(pts) * step * step / area, 1.0, delta=0.005)
    cov = np.cov(pts.T, bias=True)
    pose = sprites.shape_pose(shape, 100)
    centre, cov_pose = _pose_in_pixels(pose, 100)
    np.testing.assert_allclose(pts.mean(axis=0), centre, atol=0.01)
    np.testing.assert_allclose(cov, cov_pose, rtol=0.01, atol=0.02)

  # --- figure coverage --------------------------------------------------------------------------
  def test_figure_foreground_fraction(self):
    fractions = np.concatenate(
      [(gt["parts"] > 0).mean(axis=(1, 2)) for _, _, _, gt, _ in self.videos["figure2d"]]
    )
    self.assertTrue(np.all((fractions >= 0.12) & (fractions <= 0.28)), fractions)
    for _, video, _, gt, _ in self.videos["figure2d"]:
      border = np.concatenate([gt["parts"][:, [0, -1]].ravel(), gt["parts"][:, :, [0, -1]].ravel()])
      self.assertFalse(np.any(border), video)  # the whole figure stays in the frame
    # Over more videos (labels only, no files): the mean stays near 20 %.
    more = [
      figure2d.render_figure_video(sprites.video_rng(5, 0, i), 4, SIZE, supersample=1)["parts"]
      for i in range(12)
    ]
    mean = float(np.mean([(p > 0).mean() for p in more]))
    self.assertGreater(mean, 0.15)
    self.assertLess(mean, 0.25)

  # --- determinism ------------------------------------------------------------------------------
  @parameterized.expand([("sprites",), ("figure2d",)])
  def test_same_seed_gives_identical_bytes(self, name):
    a, b, c = (os.path.join(self.tmp, x) for x in "abc")
    for root, seed in ((a, 7), (b, 7), (c, 8)):
      GENERATORS[name](root, train_videos=2, test_videos=1, frames=3, size=32, seed=seed)
    files_a, files_b, files_c = _tree_bytes(a), _tree_bytes(b), _tree_bytes(c)
    self.assertEqual(sorted(files_a), sorted(files_b))
    self.assertEqual(files_a, files_b)
    frames_a = [v for k, v in sorted(files_a.items()) if k.endswith(".png")]
    frames_c = [v for k, v in sorted(files_c.items()) if k.endswith(".png")]
    self.assertNotEqual(frames_a, frames_c)

  # --- reading back -----------------------------------------------------------------------------
  @parameterized.expand([("sprites",), ("figure2d",)])
  def test_read_back_through_layout_and_pipeline(self, name):
    from copart_tf.data import layout, pipeline  # TensorFlow: imported only here

    root = self.roots[name]
    entries = layout.scan_split(root, "train")
    self.assertEqual(len(entries), COUNTS[name][0])
    self.assertTrue(all(e.kind == "frames" and e.num_frames == FRAMES for e in entries))
    self.assertTrue(all(layout.ground_truth_path(root, "train", e) for e in entries))
    records = list(pipeline.iterate_eval_frames(root, "test", SIZE))
    self.assertEqual(len(records), COUNTS[name][1] * FRAMES)
    _, _, frames, gt, _ = next(v for v in self.videos[name] if v[0] == "test")
    np.testing.assert_array_equal(records[1]["image"], frames[1])
    np.testing.assert_array_equal(records[1]["parts"], gt["parts"][1])
    np.testing.assert_array_equal(records[1]["landmarks"], gt["landmarks"][1])
    batch = next(iter(pipeline.make_pair_dataset(root, "train", 32, 2, seed=0, augment=False)))
    self.assertEqual(tuple(batch["source"].shape), (2, 32, 32, 3))

  def test_read_poses(self):
    split, video, _, gt, _ = self.videos["sprites"][0]
    poses = gt_lib.read_poses(os.path.join(self.roots["sprites"], "labels", split, video + ".npz"))
    np.testing.assert_array_equal(poses["poses"], gt["poses"])
    np.testing.assert_array_equal(poses["pose_visible"], gt["pose_visible"])

  # --- ground-truth extras ----------------------------------------------------------------------
  def _gt_args(self, t=2):
    return dict(
      parts=np.zeros((t, 4, 4), np.uint8),
      links=np.zeros((t, 4, 4), np.uint8),
      landmarks=np.zeros((t, 1, 2), np.float32),
      visible=np.ones((t, 1), bool),
      part_names=["background", "a"],
      link_names=["background"],
      landmark_names=["p"],
    )

  def test_extra_arrays(self):
    plain, empty, with_extra = (os.path.join(self.tmp, f"{n}.npz") for n in "abc")
    gt_lib.write_ground_truth(plain, **self._gt_args())
    gt_lib.write_ground_truth(empty, **self._gt_args(), extra={})
    with open(plain, "rb") as fa, open(empty, "rb") as fb:
      self.assertEqual(fa.read(), fb.read())
    self.assertEqual(gt_lib.read_extra(plain), {})
    with self.assertRaisesRegex(DataError, "no poses"):
      gt_lib.read_poses(plain)
    poses = np.tile(np.eye(2, 3, dtype=np.float32), (2, 3, 1, 1))
    gt_lib.write_ground_truth(
      with_extra, **self._gt_args(), extra={"poses": poses, "pose_visible": np.ones((2, 3), bool)}
    )
    self.assertIn("parts", gt_lib.read_ground_truth(with_extra))
    np.testing.assert_array_equal(gt_lib.read_poses(with_extra)["poses"], poses)
    with self.assertRaisesRegex(DataError, "leading dimension T=2"):
      gt_lib.write_ground_truth(plain, **self._gt_args(), extra={"poses": poses[:1]})
    with self.assertRaisesRegex(DataError, "reserved"):
      gt_lib.write_ground_truth(plain, **self._gt_args(), extra={"parts": np.zeros((2, 4, 4))})

  def test_max_shapes_one_gives_single_sprite_videos(self):
    root = os.path.join(self.tmp, "single")
    sprites.synthesize_sprites_dataset(root, 6, 2, frames=3, size=32, max_shapes=1)
    with open(os.path.join(root, "meta.json")) as f:
      meta = json.load(f)
    counts = [v["num_shapes"] for split in ("train", "test") for v in meta["videos"][split]]
    self.assertEqual(counts, [1] * 8)
    with self.assertRaisesRegex(ConfigError, "--max_shapes"):
      sprites.synthesize_sprites_dataset(os.path.join(self.tmp, "y"), 1, 0, max_shapes=5)

  def test_fixed_identity_gives_each_sprite_id_one_kind_and_hue(self):
    def identities(identity):
      root = os.path.join(self.tmp, f"identity_{identity}")
      sprites.synthesize_sprites_dataset(root, 12, 0, frames=1, size=32, identity=identity)
      with open(os.path.join(root, "meta.json")) as f:
        videos = json.load(f)["videos"]["train"]
      kinds = {i: set() for i in range(4)}
      hues = {i: [] for i in range(4)}
      for video in videos:
        for i, (kind, color) in enumerate(zip(video["kinds"], video["colors"], strict=True)):
          kinds[i].add(kind)
          hues[i].append(colorsys.rgb_to_hsv(*(np.array(color) / 255.0))[0])
      return kinds, hues

    kinds, hues = identities("fixed")
    for i in range(4):
      self.assertEqual(kinds[i], {sprites.SLOT_KINDS[i]})
      # Circular hue distance to the slot's hue (after rounding to uint8 colours).
      dist = np.abs((np.array(hues[i]) - sprites.SLOT_HUES[i] + 0.5) % 1.0 - 0.5)
      self.assertLess(dist.max(), 0.04, i)
    kinds, _ = identities("random")
    self.assertGreater(len(kinds[0]), 1)  # the same id takes several kinds across videos
    with self.assertRaisesRegex(ConfigError, "--identity"):
      sprites.synthesize_sprites_dataset(os.path.join(self.tmp, "z"), 1, 0, identity="mixed")

  # --- dispatch and CLIs ------------------------------------------------------------------------
  def test_errors(self):
    with self.assertRaisesRegex(ConfigError, "--frames"):
      sprites.synthesize_sprites_dataset(os.path.join(self.tmp, "x"), 1, 0, frames=0)
    with self.assertRaisesRegex(ConfigError, "--train_videos"):
      figure2d.synthesize_figure2d_dataset(os.path.join(self.tmp, "x"), 0, 0)
    with self.assertRaisesRegex(DataError, "not empty"):
      sprites.synthesize_sprites_dataset(self.roots["sprites"], 1, 0, frames=1)
    with self.assertRaisesRegex(ConfigError, "--body='robot'.*sprites"):
      synthetic.synthesize_dataset("robot", os.path.join(self.tmp, "d"), 1, 0, 1)
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "x")))

  def test_synthesize_dispatch_without_pybullet(self):
    """synthesize_dataset('sprites'/'figure2d') never imports pybullet."""
    code = (
      "import sys, json\n"
      "from copart_tf import synthetic\n"
      "out = {}\n"
      "for name in ('sprites', 'figure2d'):\n"
      f"  s = synthetic.synthesize_dataset(name, {self.tmp!r} + '/' + name, 1, 1, 2, size=32)\n"
      "  out[name] = [s['body'], s['frames']]\n"
      "out['pybullet'] = 'pybullet' in sys.modules\n"
      "print('RESULT ' + json.dumps(out))\n"
    )
    proc = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    self.assertEqual(proc.returncode, 0, proc.stderr)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])
    self.assertEqual(
      result, {"sprites": ["sprites", 4], "figure2d": ["figure2d", 4], "pybullet": False}
    )
    self.assertTrue(os.path.isdir(os.path.join(self.tmp, "figure2d", "test", "00000_figure")))

  def test_module_cli(self):
    out = os.path.join(self.tmp, "cli")
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "copart_tf.synthetic.figure2d",
        f"--out={out}",
        "--train_videos=1",
        "--test_videos=1",
        "--frames=2",
        "--size=32",
        "--nocontact_sheet",
      ],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=300,
    )
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(json.loads(proc.stdout)["frames"], 4)
    self.assertEqual(sorted(os.listdir(out)), ["labels", "meta.json", "test", "train"])
    again = subprocess.run(
      [sys.executable, "-m", "copart_tf.synthetic.sprites", f"--out={out}"],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=300,
    )
    self.assertEqual(again.returncode, 2)
    self.assertIn("error: ", again.stderr)
    self.assertIn("not empty", again.stderr)

  def test_trainer_synthesizes_if_missing(self):
    from copart_tf.training import config as config_lib
    from copart_tf.training import trainer

    data_dir = os.path.join(self.tmp, "data")
    config = config_lib.TrainConfig(
      data_dir=data_dir,
      synthesize_if_missing="sprites",
      image_size=32,
      synth_train_videos=2,
      synth_test_videos=1,
      synth_frames=3,
      seed=3,
      synth_seed=5,
    )
    trainer.ensure_data(config)
    self.assertEqual(len(os.listdir(os.path.join(data_dir, "train"))), 2)
    with open(os.path.join(data_dir, "meta.json"), encoding="utf-8") as f:
      meta = json.load(f)
    self.assertEqual((meta["dataset"], meta["size"], meta["supersample"]), ("sprites", 32, 4))
    # The dataset's seed is --synth_seed, whatever the training --seed.
    self.assertEqual(meta["seed"], 5)


if __name__ == "__main__":
  unittest.main()
