"""Synthetic dataset generator: determinism, layout, label/RGB alignment, landmark projection."""

import json
import os
import tempfile
import unittest

import numpy as np
from parameterized import parameterized
from PIL import Image

from copart_tf.data.ground_truth import read_ground_truth
from copart_tf.errors import ConfigError, DataError
from copart_tf.synthetic import appearance as appearance_lib
from copart_tf.synthetic import bodies, dataset, render
from copart_tf.synthetic import camera as camera_lib
from copart_tf.synthetic import scene as scene_lib

_SCENES = {}


def _scene(body):
  """One pybullet scene per body for the whole module (loading meshes takes a moment)."""
  if body not in _SCENES:
    _SCENES[body] = scene_lib.Scene(bodies.get_body(body))
  return _SCENES[body]


def tearDownModule():
  for scene in _SCENES.values():
    scene.close()
  _SCENES.clear()


def _tree_bytes(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def _tiny(out, seed=0, **kwargs):
  args = dict(train_videos=1, test_videos=1, frames=3, size=32, seed=seed, supersample=2)
  args.update(kwargs)
  return dataset.synthesize_dataset("humanoid_mocap", out, **args)


class DatasetTest(unittest.TestCase):
  def setUp(self):
    self._tmp = tempfile.TemporaryDirectory()
    self.tmp = self._tmp.name

  def tearDown(self):
    self._tmp.cleanup()

  def test_same_seed_gives_identical_bytes(self):
    a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
    _tiny(a, seed=11)
    _tiny(b, seed=11)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    self.assertEqual(sorted(files_a), sorted(files_b))
    self.assertTrue(any(k.endswith(".npz") for k in files_a))
    self.assertIn("contact_sheet.png", files_a)
    for key in files_a:
      self.assertEqual(files_a[key], files_b[key], key)

  def test_different_seed_gives_different_data(self):
    a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
    _tiny(a, seed=1, test_videos=0, contact_sheet=False)
    _tiny(b, seed=2, test_videos=0, contact_sheet=False)
    frames_a = {k: v for k, v in _tree_bytes(a).items() if k.endswith(".png")}
    frames_b = {k: v for k, v in _tree_bytes(b).items() if k.endswith(".png")}
    self.assertNotEqual(
      [frames_a[k] for k in sorted(frames_a)], [frames_b[k] for k in sorted(frames_b)]
    )

  def test_layout_meta_and_ground_truth(self):
    out = os.path.join(self.tmp, "data")
    calls = []
    summary = _tiny(out, seed=3, frames=4, progress=lambda d, t: calls.append((d, t)))
    self.assertEqual(calls[-1], (8, 8))
    self.assertEqual(len(calls), 8)
    self.assertEqual(summary["num_parts"], 10)
    self.assertEqual(sorted(os.listdir(self.tmp)), ["data"])  # no partial folder left
    with open(os.path.join(out, "meta.json"), encoding="utf-8") as f:
      meta = json.load(f)
    self.assertEqual(meta["body"], "humanoid_mocap")
    self.assertEqual(meta["num_parts"], 10)
    self.assertEqual(meta["part_names"][0], "background")
    self.assertEqual(meta["counts"], {"train": 1, "test": 1})
    self.assertEqual((meta["size"], meta["seed"], meta["fps"]), (32, 3, 30.0))
    for split in ("train", "test"):
      (video,) = os.listdir(os.path.join(out, split))
      self.assertEqual(meta["videos"][split][0]["name"], video)
      self.assertIn(meta["videos"][split][0]["clip"], bodies.HUMANOID_CLIPS)
      frames = sorted(os.listdir(os.path.join(out, split, video)))
      self.assertEqual(frames, [f"{t:05d}.png" for t in range(4)])
      img = np.asarray(Image.open(os.path.join(out, split, video, frames[0])))
      self.assertEqual(img.shape, (32, 32, 3))
      gt = read_ground_truth(
        os.path.join(out, "labels", split, video + ".npz"), num_frames=4, image_size=32
      )
      self.assertEqual(gt["parts"].shape, (4, 32, 32))
      self.assertEqual(gt["landmarks"].shape, (4, 17, 2))
      self.assertEqual(gt["part_names"], meta["part_names"])
      self.assertEqual(gt["landmark_names"], bodies.HUMANOID.landmark_names)
      self.assertGreater((gt["parts"] > 0).mean(), 0.02)
      # Parts are the grouping of the raw link labels.
      scene = _scene("humanoid_mocap")
      np.testing.assert_array_equal(scene.link_to_part[gt["links"]], gt["parts"])

  def test_existing_output_is_an_error(self):
    out = os.path.join(self.tmp, "data")
    os.makedirs(out)
    with open(os.path.join(out, "x.txt"), "w") as f:
      f.write("x")
    with self.assertRaisesRegex(DataError, "already exists"):
      _tiny(out, seed=0)

  @parameterized.expand(
    [
      ("frames", dict(frames=0), "--frames"),
      ("size", dict(size=4), "--size"),
      ("seed", dict(seed=-1), "--seed"),
      ("no_videos", dict(train_videos=0, test_videos=0), "--train_videos"),
    ]
  )
  def test_bad_arguments(self, _, kwargs, flag):
    with self.assertRaisesRegex(ConfigError, flag):
      _tiny(os.path.join(self.tmp, "data"), **kwargs)

  def test_unknown_body(self):
    with self.assertRaisesRegex(ConfigError, "--body='robot'"):
      dataset.synthesize_dataset("robot", os.path.join(self.tmp, "d"), 1, 0, 1)


class BodiesTest(unittest.TestCase):
  @parameterized.expand([("humanoid_mocap", 10), ("kuka_iiwa", 5), ("laikago", 9)])
  def test_part_table(self, body, num_parts):
    spec = bodies.get_body(body)
    self.assertEqual(spec.num_parts, num_parts)
    self.assertEqual(len(spec.part_names), num_parts + 1)
    self.assertEqual(spec.part_names[0], "background")
    scene = _scene(body)
    # Every rendered link belongs to exactly one part, and every part has a rendered link.
    for link in scene.visual_links:
      self.assertGreater(scene.link_to_part[link + 2], 0, scene.link_names[link + 2])
    rendered_parts = {int(scene.link_to_part[link + 2]) for link in scene.visual_links}
    self.assertEqual(rendered_parts, set(range(1, num_parts + 1)))
    all_links = [link for _, links in spec.parts for link in links]
    self.assertEqual(len(all_links), len(set(all_links)))

  def test_humanoid_treadmill_removes_drift(self):
    spec = bodies.get_body("humanoid_mocap")
    motion = spec.sample_motion(
      np.random.default_rng(0), 60, 30.0, _scene(spec.name).data_path, "run"
    )
    base = np.array([pose.base_pos for pose in motion.poses])
    t = np.arange(60) / 30.0
    for axis in (0, 1):
      self.assertLess(abs(np.polyfit(t, base[:, axis], 1)[0]), 1e-6)
    self.assertGreater(base[:, 2].mean(), 0.6)  # z-up: pelvis about 0.8 m above the floor

  def test_quaternion_helpers(self):
    q = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # 90 deg about z
    np.testing.assert_allclose(bodies.quat_rotate(q, [1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(
      bodies.quat_mul(q, q), [0.0, 0.0, 1.0, 0.0], atol=1e-12
    )  # 180 deg about z
    half = bodies.quat_slerp(np.array([[0.0, 0.0, 0.0, 1.0]]), q[None], np.array([0.5]))[0]
    np.testing.assert_allclose(half, [0.0, 0.0, np.sin(np.pi / 8), np.cos(np.pi / 8)], atol=1e-12)


class RenderingTest(unittest.TestCase):
  def test_render_samples_pixel_centres(self):
    """A flat rectangle covers exactly the pixels whose centres its projection contains."""
    scene = _scene("humanoid_mocap")
    c = scene.client
    shape = c.createVisualShape(
      scene.p.GEOM_BOX, halfExtents=[0.3, 0.2, 0.001], rgbaColor=[1, 0, 0, 1]
    )
    box = c.createMultiBody(0, -1, shape, basePosition=[0.0, 0.0, 5.0])
    try:
      size = 48
      view = camera_lib.look_at([0.0123, 0.0371, 8.0], [0.0123, 0.0371, 5.0], up=(0.0, 1.0, 0.0))
      proj = camera_lib.perspective(30.0)
      _, _, _, _, seg = c.getCameraImage(
        size,
        size,
        viewMatrix=view.T.reshape(-1).tolist(),
        projectionMatrix=camera_lib.render_projection(proj, size, size).T.reshape(-1).tolist(),
        renderer=scene.p.ER_TINY_RENDERER,
      )
      covered = np.asarray(seg).reshape(size, size) == box
      corners = np.array([[-0.3, -0.2, 5.001], [0.3, 0.2, 5.001]])
      pix, _ = camera_lib.project_points(corners, view, proj, size, size)
      x0, x1 = sorted(pix[:, 0])
      y0, y1 = sorted(pix[:, 1])
      centres = np.arange(size)
      inside = ((centres[None, :] >= x0) & (centres[None, :] <= x1)) & (
        (centres[:, None] >= y0) & (centres[:, None] <= y1)
      )
      np.testing.assert_array_equal(covered, inside)
    finally:
      c.removeBody(box)

  def _frame(self, body, supersample, clip=None, elevation=15.0, seed=0):
    """Renders one posed frame and the same view without the body."""
    scene = _scene(body)
    rng = np.random.default_rng(seed)
    spec = scene.spec
    motion = spec.sample_motion(rng, 1, 30.0, scene.data_path, clip)
    scene.set_pose(motion.poses[0])
    appearance = appearance_lib._sample_appearance(rng, scene.num_links + 1)
    scene.dress(appearance)
    camera = camera_lib.fit_camera(scene.bbox_corners(), 30.0, elevation, 40.0, 0.8)
    size = 64
    big = size * supersample
    rgb, seg, depth = scene.render(camera["view"], camera["proj"], big, big, appearance, 30.0)
    links = render.downsample_labels(scene.link_labels(seg), supersample)
    world = scene.landmarks_world()
    c = scene.client
    c.resetBasePositionAndOrientation(scene.body, [50.0, 50.0, -50.0], [0.0, 0.0, 0.0, 1.0])
    rgb_bg, seg_bg, _ = scene.render(camera["view"], camera["proj"], big, big, appearance, 30.0)
    self.assertTrue(np.all(seg_bg != scene.body))
    return {
      "scene": scene,
      "rgb_big": rgb,
      "rgb_bg_big": rgb_bg,
      "rgb": render.downsample_rgb(rgb, supersample),
      "rgb_bg": render.downsample_rgb(rgb_bg, supersample),
      "links": links,
      "parts": scene.link_to_part[links],
      "camera": camera,
      "world": world,
      "depth": camera_lib.linearize_depth(depth),
      "size": size,
    }

  @parameterized.expand([("humanoid_mocap",), ("kuka_iiwa",), ("laikago",)])
  def test_labels_match_rgb_exactly_without_supersampling(self, body):
    f = self._frame(body, supersample=1)
    changed = np.any(f["rgb"] != f["rgb_bg"], axis=-1)
    foreground = f["links"] > 0
    self.assertGreater(foreground.sum(), 50)
    np.testing.assert_array_equal(foreground, changed)

  def test_labels_match_rgb_with_supersampling(self):
    f = self._frame("humanoid_mocap", supersample=2)
    # Fraction of each output pixel's area (its 2x2 samples) where the body changed the colour.
    changed = np.any(f["rgb_big"] != f["rgb_bg_big"], axis=-1).astype(float)
    size = f["size"]
    coverage = changed.reshape(size, 2, size, 2).mean(axis=(1, 3))
    foreground = f["links"] > 0
    self.assertGreater(foreground.sum(), 50)
    self.assertTrue(np.all(foreground[coverage > 0.5]))
    self.assertFalse(np.any(foreground[coverage < 0.5]))
    # The averaged colour differs from the background wherever the label is foreground.
    self.assertTrue(np.all(np.any(f["rgb"] != f["rgb_bg"], axis=-1)[foreground]))

  def test_humanoid_landmarks(self):
    f = self._frame("humanoid_mocap", supersample=2, clip="walk", elevation=10.0)
    size = f["size"]
    pix, depth = camera_lib.project_points(
      f["world"], f["camera"]["view"], f["camera"]["proj"], size, size
    )
    names = bodies.HUMANOID.landmark_names
    idx = {n: i for i, n in enumerate(names)}
    # Upright walker: head above the neck above the pelvis above the ankles (y grows downwards).
    self.assertLess(pix[idx["head"], 1], pix[idx["neck"], 1])
    self.assertLess(pix[idx["neck"], 1], pix[idx["pelvis"], 1])
    for side in ("left", "right"):
      self.assertLess(pix[idx["pelvis"], 1], pix[idx[f"{side}_knee"], 1])
      self.assertLess(pix[idx[f"{side}_knee"], 1], pix[idx[f"{side}_ankle"], 1])
    visible = render._visibility(
      pix, depth, f["depth"], size, 2, bodies.HUMANOID.visibility_tolerance
    )
    self.assertGreaterEqual(visible.sum(), 10)
    xy = np.clip(np.round(pix).astype(int), 0, size - 1)
    labels = f["parts"][xy[:, 1], xy[:, 0]]
    self.assertGreaterEqual((labels[visible] > 0).mean(), 0.9)
    head_part = bodies.HUMANOID.part_names.index("head")
    self.assertEqual(labels[idx["head"]], head_part)
    pelvis_part = bodies.HUMANOID.part_names.index("torso")
    self.assertEqual(labels[idx["pelvis"]], pelvis_part)

  def test_occluded_landmark_is_not_visible(self):
    depth_map = np.full((8, 8), 2.0)
    pix = np.array([[3.0, 3.0], [3.0, 3.0], [-1.0, 3.0]])
    depth = np.array([2.05, 2.5, 2.0])
    visible = render._visibility(pix, depth, depth_map, 8, 1, tolerance=0.1)
    np.testing.assert_array_equal(visible, [True, False, False])


class DownsampleTest(unittest.TestCase):
  def test_majority(self):
    labels = np.array([[1, 1, 0, 0], [1, 2, 0, 3]])
    np.testing.assert_array_equal(render.downsample_labels(labels, 2), [[1, 0]])

  def test_ties_are_split_evenly(self):
    # A vertical edge through the middle of every 2x2 block: half of the pixels go to each side.
    labels = np.tile(np.array([[1, 2]]), (8, 4))
    out = render.downsample_labels(labels, 2)
    self.assertEqual((out == 1).sum(), (out == 2).sum())
    labels_h = labels.T
    out_h = render.downsample_labels(labels_h, 2)
    self.assertEqual((out_h == 1).sum(), (out_h == 2).sum())

  def test_rgb_area_average(self):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = 200
    np.testing.assert_array_equal(render.downsample_rgb(rgb, 2), [[[50, 50, 50]]])


if __name__ == "__main__":
  unittest.main()
