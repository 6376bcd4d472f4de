r"""Synthetic co-part dataset with exact ground truth, rendered with pybullet's TinyRenderer.

Usage::

  python -m copart_tf.data.synthesize --body=humanoid_mocap --out=data/humanoid \
      --train_videos=40 --test_videos=10 --frames=64 --size=128 --seed=0

or, from Python, `synthesize_dataset(...)` (used by the training CLI's ``--synthesize_if_missing``).

The names in `LADDER_DATASETS` (``sprites``, ``figure2d``) are numpy-only "quality ladder"
datasets that need no pybullet: ``--body=sprites`` hands over to `copart_tf.data.sprites` (and
``figure2d`` to `copart_tf.data.figure2d`), which have their own defaults and CLIs.

Output (FOMM layout + our side-car, see docs/ARCHITECTURE.md)::

  root/{train,test}/<video>/<frame:05d>.png       RGB frames, size x size
  root/labels/{train,test}/<video>.npz            parts, links, landmarks, visible, names
  root/meta.json                                  body, K, part names, camera per video ...
  root/contact_sheet.png                          frame | part map | landmarks, a few rows

How a video is made (all randomness from ``np.random.default_rng([seed, split, index])``, so the
same seed gives byte-identical files and each video is independent of the others):

1. Motion: a mocap clip and start time (or a random smooth trajectory for the arm), one kinematic
   pose per frame at ``fps``; the root's horizontal drift is removed (treadmill, see `bodies`).
2. Camera: ONE fixed camera per video (static background, like Tai-Chi-HD). Azimuth is uniform,
   elevation uniform in [0, 30] degrees, vertical field of view in [35, 50] degrees. The link
   bounding boxes of ALL frames are projected first, then distance and aim are solved so their
   union spans a random 60-90 % of the frame height (at most 92 % of the width), roughly centred.
3. Appearance: a random body colour with a small per-link variation (hue +-0.02, value +-0.07), a
   plain or checkered floor and a sky with a vertical gradient, all with random colours that keep
   some contrast to the body; random light direction and ambient/diffuse strength; no shadows
   (the background stays exactly static).
4. Rendering: TinyRenderer RGB + per-link segmentation + depth at ``supersample`` x the size. RGB
   is box-filtered down (area average, anti-aliasing); label maps take the most frequent label of
   each supersample block (ties split by a fixed 2x2 pixel-parity order so no direction is
   favoured). Each output pixel's label is therefore the part covering most of its area, aligned
   with the averaged colour. TinyRenderer samples pixel (i, j) at (i - 0.5, j + 0.5) in
   pixel-centre coordinates; the projection matrix used for rendering is shifted by half a pixel
   to undo that, so renders, labels and projected landmarks share `copart_tf.ops.grid`'s
   convention (0 = centre of the first pixel).
5. Landmarks: world points attached to links, projected with the same view/projection matrices.
   ``visible`` = inside the frame and not occluded: the landmark's camera depth is at most the
   rendered depth at its (supersampled) pixel plus the body's ``visibility_tolerance`` (0.08-0.12 m,
   about one limb radius, because joint centres lie inside the limbs). Occluders closer than that
   tolerance (e.g. a hand resting on the chest) do not count as occlusion.

Generation writes into a temporary sibling folder ``.<name>.partial-*`` and renames it to
``out_dir`` only when everything is written, so a killed run never leaves a dataset that looks
complete.
"""

import contextlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

from copart_tf.data import bodies as bodies_lib
from copart_tf.data import sprites
from copart_tf.data.ground_truth import write_ground_truth
from copart_tf.errors import ConfigError, CopartError, DataError

GENERATOR_VERSION = "copart_tf.data.synthesize/1"
SPLITS = ("train", "test")

_NEAR = 0.05
_FAR = 60.0
_MAX_WIDTH_FRACTION = 0.92

# Numpy-only synthetic datasets (no pybullet): name -> (module, generator function). Imported lazily.
LADDER_DATASETS = {
  "sprites": ("copart_tf.data.sprites", "synthesize_sprites_dataset"),
  "figure2d": ("copart_tf.data.figure2d", "synthesize_figure2d_dataset"),
}
DATASET_NAMES = tuple(sorted(bodies_lib.BODIES)) + tuple(sorted(LADDER_DATASETS))


def ladder_generator(name):
  """The generator function of a `LADDER_DATASETS` name: f(root, train_videos, test_videos,
  frames, size, seed, supersample=..., progress=..., contact_sheet=..., overwrite=...)."""
  module, function = LADDER_DATASETS[name]
  return getattr(importlib.import_module(module), function)


# Part colours for the contact sheet (index 0 = background).
PALETTE = np.array(
  [
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
    [170, 255, 195],
    [128, 128, 0],
    [255, 215, 180],
    [0, 0, 128],
    [128, 128, 128],
  ],
  dtype=np.uint8,
)


@contextlib.contextmanager
def _quiet_stdio():
  """Silences C-level stdout/stderr (pybullet's URDF warnings) inside the block."""
  try:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
  except (OSError, ValueError):
    yield
    return
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in saved + [devnull]:
      os.close(fd)


def _import_pybullet():
  with _quiet_stdio():  # pybullet prints its build time on import
    import pybullet
    import pybullet_data
    from pybullet_utils import bullet_client
  return pybullet, pybullet_data, bullet_client


# ----------------------------------------------------------------------------------------------
# Camera geometry (OpenGL conventions, matrices are row-major numpy arrays here).


def look_at(eye, target, up=(0.0, 0.0, 1.0)):
  """OpenGL view matrix `[4, 4]` (world -> eye coordinates, camera looks down -z)."""
  eye = np.asarray(eye, np.float64)
  f = np.asarray(target, np.float64) - eye
  f /= np.linalg.norm(f)
  s = np.cross(f, up)
  s /= np.linalg.norm(s)
  u = np.cross(s, f)
  view = np.eye(4)
  view[0, :3], view[1, :3], view[2, :3] = s, u, -f
  view[:3, 3] = -view[:3, :3] @ eye
  return view


def perspective(fov_deg, aspect=1.0, near=_NEAR, far=_FAR):
  """OpenGL projection matrix `[4, 4]` for a vertical field of view in degrees."""
  f = 1.0 / np.tan(np.radians(fov_deg) / 2.0)
  proj = np.zeros((4, 4))
  proj[0, 0] = f / aspect
  proj[1, 1] = f
  proj[2, 2] = (far + near) / (near - far)
  proj[2, 3] = 2.0 * far * near / (near - far)
  proj[3, 2] = -1.0
  return proj


def render_projection(proj, height, width):
  """Projection matrix to hand to TinyRenderer so its pixels sample at our pixel centres.

  TinyRenderer samples output pixel (i, j) at (i - 0.5, j + 0.5) in pixel-centre coordinates
  (measured: see tests). Shifting NDC by (-1/W, -1/H) moves the samples to (i, j).
  """
  out = np.array(proj, np.float64)
  out[0] -= out[3] / width
  out[1] -= out[3] / height
  return out


def project_points(points, view, proj, height, width):
  """Projects world points to pixels.

  Args:
    points: `[N, 3]` world coordinates.
    view: `[4, 4]` view matrix.
    proj: `[4, 4]` projection matrix (the ideal one, not `render_projection`'s).
    height: image height H.
    width: image width W.

  Returns:
    (pixels `[N, 2]` (x, y), 0 = centre of the first pixel; eye depth `[N]`, distance along the
    viewing axis, positive in front of the camera).
  """
  pts = np.concatenate([points, np.ones((len(points), 1))], axis=1)
  eye = pts @ view.T
  clip = eye @ proj.T
  ndc = clip[:, :3] / clip[:, 3:4]
  x = (ndc[:, 0] + 1.0) * 0.5 * width - 0.5
  y = (1.0 - ndc[:, 1]) * 0.5 * height - 0.5
  return np.stack([x, y], axis=1), -eye[:, 2]


def linearize_depth(buffer, near=_NEAR, far=_FAR):
  """Converts pybullet's depth buffer (in [0, 1]) to eye depth in metres."""
  return far * near / (far - (far - near) * np.asarray(buffer, np.float64))


def fit_camera(points, azimuth_deg, elevation_deg, fov_deg, height_fraction, offset=(0.0, 0.0)):
  """Places a camera with a given direction so `points` fill a given part of the frame.

  Args:
    points: `[N, 3]` world points (e.g. link bounding-box corners over all frames of a clip).
    azimuth_deg: camera azimuth around the world z axis.
    elevation_deg: camera elevation above the horizontal (positive = looking down).
    fov_deg: vertical field of view.
    height_fraction: fraction of the frame height the points' projected extent should span (the
      width is limited to 92 % of the frame, whichever is tighter wins).
    offset: (x, y) NDC position of the extent's centre (0 = image centre).

  Returns:
    dict with ``eye``, ``target`` (`[3]`), ``view`` and ``proj`` (`[4, 4]`).
  """
  az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
  back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
  forward = -back
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  up = np.cross(right, forward)
  tan_half = np.tan(np.radians(fov_deg) / 2.0)
  lo, hi = points.min(axis=0), points.max(axis=0)
  target = (lo + hi) / 2.0
  dist = max(2.0 * np.linalg.norm(hi - lo), 1.0)
  for _ in range(30):
    eye = target + dist * back
    rel = points - eye
    z = np.maximum(rel @ forward, 1e-3)
    nx = (rel @ right) / (z * tan_half)
    ny = (rel @ up) / (z * tan_half)
    w, h = nx.max() - nx.min(), ny.max() - ny.min()
    cx, cy = (nx.max() + nx.min()) / 2.0 - offset[0], (ny.max() + ny.min()) / 2.0 - offset[1]
    scale = max(h / (2.0 * height_fraction), w / (2.0 * _MAX_WIDTH_FRACTION), 1e-3)
    target = target + (cx * right + cy * up) * dist * tan_half
    dist *= scale
    if abs(scale - 1.0) < 1e-4 and abs(cx) < 1e-4 and abs(cy) < 1e-4:
      break
  eye = target + dist * back
  near_depth = float(((points - eye) @ forward).min())
  if near_depth <= 2.0 * _NEAR:
    raise DataError(f"camera fit failed: body {near_depth:.3f} m from the camera")
  return {
    "eye": eye,
    "target": target,
    "view": look_at(eye, target),
    "proj": perspective(fov_deg),
  }


# ----------------------------------------------------------------------------------------------
# Colours and textures.


def _hsv_to_rgb(h, s, v):
  h = (h % 1.0) * 6.0
  i = int(np.floor(h)) % 6
  f = h - np.floor(h)
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
  return np.clip(np.array(rgb, np.float64), 0.0, 1.0)


BACKGROUNDS = ("mixed", "plain", "textured")


def _sample_appearance(rng, num_links, background="mixed"):
  """Random body/floor/sky colours with some contrast between body and background.

  `background`: "mixed" (checker floor in 70% of the videos), "plain" (uniform floor; the sky keeps
  its smooth vertical gradient) or "textured" (always a checker floor).
  """
  for _ in range(100):
    body_hsv = (rng.uniform(), rng.uniform(0.3, 0.85), rng.uniform(0.5, 0.95))
    floor_hsv = (rng.uniform(), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.8))
    sky_hsv = (rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.55, 1.0))
    body = _hsv_to_rgb(*body_hsv)
    floor = _hsv_to_rgb(*floor_hsv)
    sky = _hsv_to_rgb(*sky_hsv)
    if min(np.linalg.norm(body - floor), np.linalg.norm(body - sky)) > 0.3:
      break
  link_colors = []
  for _ in range(num_links):
    h = body_hsv[0] + rng.uniform(-0.02, 0.02)
    s = np.clip(body_hsv[1] * rng.uniform(0.9, 1.1), 0.0, 1.0)
    v = np.clip(body_hsv[2] + rng.uniform(-0.07, 0.07), 0.0, 1.0)
    link_colors.append(_hsv_to_rgb(h, s, v))
  checker = bool(rng.uniform() < 0.7)
  if background != "mixed":
    checker = background == "textured"
  floor_dark = np.clip(floor * rng.uniform(0.7, 0.85), 0.0, 1.0) if checker else floor
  tiles = int(rng.choice([4, 6, 8]))
  light_az = rng.uniform(-60.0, 60.0)
  light_el = rng.uniform(35.0, 75.0)
  return {
    "body_rgb": body,
    "link_rgb": link_colors,
    "floor_rgb": floor,
    "floor_rgb2": floor_dark,
    "floor_tiles_per_2m": tiles if checker else 1,
    "sky_rgb": sky,
    "sky_top_rgb": np.clip(sky * rng.uniform(0.75, 0.95), 0.0, 1.0),
    "light_azimuth_offset": light_az,
    "light_elevation": light_el,
    "ambient": rng.uniform(0.45, 0.7),
    "diffuse": rng.uniform(0.3, 0.5),
    "specular": rng.uniform(0.0, 0.15),
  }


def _checker_texture(color_a, color_b, tiles, px_per_tile=8):
  n = tiles * px_per_tile
  yy, xx = np.mgrid[0:n, 0:n] // px_per_tile
  mask = ((yy + xx) % 2 == 0)[..., None]
  a = np.round(np.asarray(color_a) * 255).astype(np.uint8)
  b = np.round(np.asarray(color_b) * 255).astype(np.uint8)
  return np.where(mask, a, b).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Label down-sampling.


def downsample_rgb(rgb, factor):
  """Area-average `[H*f, W*f, 3]` uint8 -> `[H, W, 3]` uint8."""
  if factor == 1:
    return rgb
  h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
  blocks = rgb.reshape(h, factor, w, factor, -1).astype(np.float32).mean(axis=(1, 3))
  return np.clip(np.round(blocks), 0, 255).astype(np.uint8)


def downsample_labels(labels, factor):
  """Most frequent label per `factor x factor` block, `[H*f, W*f]` -> `[H, W]`.

  Ties are broken by a fixed sample order that depends on the output pixel's parity, so that over
  a straight edge half of the tied pixels go to each side (no systematic half-pixel shift).
  """
  if factor == 1:
    return labels
  h, w = labels.shape[0] // factor, labels.shape[1] // factor
  n = factor * factor
  samples = labels.reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, n)
  counts = (samples[..., :, None] == samples[..., None, :]).sum(-1)
  # Priority: rotate the sample order by the pixel parity (0..3) so ties do not favour a side.
  parity = (2 * (np.arange(h)[:, None] % 2) + (np.arange(w)[None, :] % 2)) % n
  order = (np.arange(n)[None, None, :] + parity[..., None]) % n
  counts_ordered = np.take_along_axis(counts, order, axis=-1)
  best = np.take_along_axis(order, np.argmax(counts_ordered, axis=-1)[..., None], axis=-1)
  return np.take_along_axis(samples, best, axis=-1)[..., 0]


# ----------------------------------------------------------------------------------------------
# The scene.


class Scene:
  """A pybullet DIRECT world with a floor and one body, re-dressed for every video.

  Args:
    spec: a `bodies.BodySpec`.
  """

  def __init__(self, spec):
    p, pybullet_data, bullet_client = _import_pybullet()
    self.p = p
    self.spec = spec
    self.data_path = pybullet_data.getDataPath()
    self._tmp = tempfile.TemporaryDirectory(prefix="copart_synth_tex_")
    self._num_textures = 0
    with _quiet_stdio():
      self.client = bullet_client.BulletClient(connection_mode=p.DIRECT)
      self.client.setAdditionalSearchPath(self.data_path)
      self.plane = self.client.loadURDF("plane.urdf")
      urdf = spec.urdf
      if spec.urdf_patch is not None:
        with open(os.path.join(self.data_path, urdf), encoding="utf-8", errors="replace") as f:
          patched = spec.urdf_patch(f.read())
        urdf = os.path.join(self._tmp.name, os.path.basename(spec.urdf))
        with open(urdf, "w", encoding="utf-8") as f:
          f.write(patched)
      self.body = self.client.loadURDF(
        urdf,
        useFixedBase=True,
        globalScaling=spec.global_scaling,
        flags=p.URDF_MAINTAIN_LINK_ORDER,
      )
    c = self.client
    base_name = c.getBodyInfo(self.body)[0].decode()
    self.num_links = c.getNumJoints(self.body)
    names = {-1: base_name}
    self.joint_index = {}
    for j in range(self.num_links):
      info = c.getJointInfo(self.body, j)
      names[j] = info[12].decode()
      self.joint_index[info[1].decode()] = j
    self.link_index = {name: idx for idx, name in names.items()}
    # Raw link labels: 0 background, 1 base, 2 + i link i.
    self.link_names = ["background"] + [names[i] for i in range(-1, self.num_links)]
    if len(self.link_names) > 256:
      raise ConfigError(f"body {spec.name} has too many links for uint8 labels")
    self.link_to_part = np.zeros(256, np.uint8)
    for part_id, (part_name, links) in enumerate(spec.parts, start=1):
      for link in links:
        if link not in self.link_index:
          raise ConfigError(
            f"body {spec.name}: part {part_name!r} names unknown link {link!r}; "
            f"links are {sorted(self.link_index)}"
          )
        self.link_to_part[self.link_index[link] + 2] = part_id
    self.visual_links = sorted({v[1] for v in c.getVisualShapeData(self.body)})
    for lm in spec.landmarks:
      if lm.link not in self.link_index:
        raise ConfigError(f"body {spec.name}: landmark {lm.name!r} names unknown link {lm.link!r}")
    self.landmark_links = np.array([self.link_index[lm.link] for lm in spec.landmarks])
    self.landmark_offsets = np.array([lm.offset for lm in spec.landmarks], np.float64)
    dyn = c.getDynamicsInfo(self.body, -1)
    self._base_inertial = (np.array(dyn[3]), np.array(dyn[4]))
    self._white = self._texture(np.full((4, 4, 3), 255, np.uint8))

  def close(self):
    """Disconnects pybullet and deletes temporary textures."""
    with contextlib.suppress(Exception):
      self.client.disconnect()
    self._tmp.cleanup()

  def _texture(self, image):
    path = os.path.join(self._tmp.name, f"tex{self._num_textures}.png")
    self._num_textures += 1
    Image.fromarray(image).save(path)
    return self.client.loadTexture(path)

  def dress(self, appearance):
    """Applies body, floor colours from `_sample_appearance`."""
    c = self.client
    for i, link in enumerate(range(-1, self.num_links)):
      rgba = list(appearance["link_rgb"][i]) + [1.0]
      if self.spec.texture_free and link in self.visual_links:
        c.changeVisualShape(self.body, link, textureUniqueId=self._white)
      c.changeVisualShape(self.body, link, rgbaColor=rgba)
    tex = _checker_texture(
      appearance["floor_rgb"], appearance["floor_rgb2"], appearance["floor_tiles_per_2m"]
    )
    c.changeVisualShape(self.plane, -1, textureUniqueId=self._texture(tex), rgbaColor=[1, 1, 1, 1])

  def set_pose(self, pose):
    """Sets a `bodies.Pose`; `pose.base_pos/base_orn` give the base link's URDF frame."""
    c = self.client
    ipos, iorn = self._base_inertial
    pos = np.asarray(pose.base_pos) + bodies_lib.quat_rotate(pose.base_orn, ipos)
    orn = bodies_lib.quat_mul(pose.base_orn, iorn)
    c.resetBasePositionAndOrientation(self.body, pos.tolist(), orn.tolist())
    for name, value in pose.joints.items():
      joint = self.joint_index[name]
      if len(value) == 1:
        c.resetJointState(self.body, joint, value[0])
      else:
        c.resetJointStateMultiDof(self.body, joint, list(value))

  def _link_frames(self):
    """World (pos `[n, 3]`, orn `[n, 4]`) of the URDF frames of the base and all links."""
    c = self.client
    pos, orn = c.getBasePositionAndOrientation(self.body)
    ipos, iorn = self._base_inertial
    inv_iorn = iorn * np.array([-1.0, -1.0, -1.0, 1.0])
    base_orn = bodies_lib.quat_mul(orn, inv_iorn)
    base_pos = np.asarray(pos) - bodies_lib.quat_rotate(base_orn, ipos)
    positions, orientations = [base_pos], [base_orn]
    if self.num_links:
      states = c.getLinkStates(self.body, list(range(self.num_links)), computeForwardKinematics=1)
      for s in states:
        positions.append(np.asarray(s[4]))
        orientations.append(np.asarray(s[5]))
    return np.array(positions), np.array(orientations)

  def landmarks_world(self):
    """`[L, 3]` world positions of the landmarks for the current pose."""
    pos, orn = self._link_frames()
    rows = self.landmark_links + 1
    return pos[rows] + bodies_lib.quat_rotate(orn[rows], self.landmark_offsets)

  def bbox_corners(self):
    """`[8 * n, 3]` corners of the world AABBs of the links that have visual shapes."""
    corners = []
    for link in self.visual_links:
      lo, hi = self.client.getAABB(self.body, link)
      lo, hi = np.asarray(lo), np.asarray(hi)
      for m in range(8):
        sel = np.array([(m >> k) & 1 for k in range(3)], bool)
        corners.append(np.where(sel, hi, lo))
    return np.array(corners)

  def lowest_moving_point(self):
    """Lowest AABB z over the links (not the base)."""
    return min(
      self.client.getAABB(self.body, link)[0][2] for link in self.visual_links if link >= 0
    )

  def render(self, view, proj, height, width, appearance, camera_azimuth):
    """Renders RGB `[h, w, 3]` uint8, segmentation `[h, w]` int32 and depth buffer `[h, w]`."""
    p = self.p
    az = np.radians(camera_azimuth + appearance["light_azimuth_offset"])
    el = np.radians(appearance["light_elevation"])
    light = [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
    rproj = render_projection(proj, height, width)
    _, _, rgb, depth, seg = self.client.getCameraImage(
      width,
      height,
      viewMatrix=view.T.reshape(-1).tolist(),
      projectionMatrix=rproj.T.reshape(-1).tolist(),
      lightDirection=light,
      lightColor=[1.0, 1.0, 1.0],
      lightAmbientCoeff=appearance["ambient"],
      lightDiffuseCoeff=appearance["diffuse"],
      lightSpecularCoeff=appearance["specular"],
      shadow=0,
      renderer=p.ER_TINY_RENDERER,
      flags=p.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX,
    )
    rgb = np.asarray(rgb, np.uint8).reshape(height, width, 4)[..., :3]
    seg = np.asarray(seg, np.int64).reshape(height, width)
    depth = np.asarray(depth, np.float64).reshape(height, width)
    return rgb, seg, depth

  def link_labels(self, seg):
    """Segmentation buffer -> raw link labels (0 bg, 1 base, 2 + i link i) `[h, w]` uint8."""
    obj = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)
    link = np.where(seg >= 0, seg >> 24, 0) - 1
    return np.where(obj == self.body, link + 2, 0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# One video.


def render_video(
  scene, rng, num_frames, size, fps, supersample=2, on_frame=None, clip=None, background="mixed"
):
  """Samples and renders one video.

  Args:
    scene: a `Scene`.
    rng: `np.random.Generator` for this video.
    num_frames: T.
    size: output frame size S (square).
    fps: frames per second of the motion.
    supersample: render at `supersample * size` and downsample (1 = no anti-aliasing).
    on_frame: optional callable() after each rendered frame.
    clip: force a motion clip (default: random).
    background: "mixed", "plain" or "textured" (see `_sample_appearance`).

  Returns:
    dict with ``frames`` uint8 `[T, S, S, 3]`, ``parts``/``links`` uint8 `[T, S, S]`,
    ``landmarks`` float32 `[T, L, 2]`, ``visible`` bool `[T, L]` and ``info`` (JSON-able).
  """
  spec = scene.spec
  for _ in range(50):
    motion = spec.sample_motion(rng, num_frames, fps, scene.data_path, clip=clip)
    if spec.floor_clearance is None:
      break
    lowest = np.inf
    for pose in motion.poses:
      scene.set_pose(pose)
      lowest = min(lowest, scene.lowest_moving_point())
    if lowest >= spec.floor_clearance:
      break
  azimuth = float(rng.uniform(0.0, 360.0))
  elevation = float(rng.uniform(0.0, 30.0))
  fov = float(rng.uniform(35.0, 50.0))
  height_fraction = float(rng.uniform(0.6, 0.9))
  offset = (float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05)))
  appearance = _sample_appearance(rng, scene.num_links + 1, background)

  corners, world_landmarks = [], []
  for pose in motion.poses:
    scene.set_pose(pose)
    corners.append(scene.bbox_corners())
    world_landmarks.append(scene.landmarks_world())
  camera = fit_camera(np.concatenate(corners), azimuth, elevation, fov, height_fraction, offset)
  view, proj = camera["view"], camera["proj"]

  scene.dress(appearance)
  big = size * supersample
  sky = _sky_image(appearance, big)
  frames = np.zeros((num_frames, size, size, 3), np.uint8)
  links = np.zeros((num_frames, size, size), np.uint8)
  num_landmarks = len(spec.landmarks)
  landmarks = np.zeros((num_frames, num_landmarks, 2), np.float32)
  visible = np.zeros((num_frames, num_landmarks), bool)
  for t, pose in enumerate(motion.poses):
    scene.set_pose(pose)
    rgb, seg, depth_buf = scene.render(view, proj, big, big, appearance, azimuth)
    rgb = np.where((seg < 0)[..., None], sky, rgb)
    frames[t] = downsample_rgb(rgb, supersample)
    links[t] = downsample_labels(scene.link_labels(seg), supersample)
    pix, depth = project_points(world_landmarks[t], view, proj, size, size)
    landmarks[t] = pix
    visible[t] = _visibility(
      pix, depth, linearize_depth(depth_buf), size, supersample, spec.visibility_tolerance
    )
    if on_frame is not None:
      on_frame()
  parts = scene.link_to_part[links]
  info = {
    "clip": motion.clip,
    "motion": motion.params,
    "camera": {
      "azimuth_deg": round(azimuth, 4),
      "elevation_deg": round(elevation, 4),
      "fov_deg": round(fov, 4),
      "height_fraction": round(height_fraction, 4),
      "eye": np.round(camera["eye"], 6).tolist(),
      "target": np.round(camera["target"], 6).tolist(),
      "view_matrix": np.round(view, 8).tolist(),
      "projection_matrix": np.round(proj, 8).tolist(),
    },
    "appearance": {
      "body_rgb": np.round(appearance["body_rgb"], 4).tolist(),
      "floor_rgb": np.round(appearance["floor_rgb"], 4).tolist(),
      "floor_checker": appearance["floor_tiles_per_2m"] > 1,
      "sky_rgb": np.round(appearance["sky_rgb"], 4).tolist(),
    },
  }
  return {
    "frames": frames,
    "parts": parts,
    "links": links,
    "landmarks": landmarks,
    "visible": visible,
    "info": info,
  }


def _sky_image(appearance, size):
  ramp = np.linspace(0.0, 1.0, size)[:, None, None]
  sky = (
    appearance["sky_top_rgb"][None, None] * (1 - ramp) + appearance["sky_rgb"][None, None] * ramp
  )
  sky = np.broadcast_to(sky, (size, size, 3))
  return np.round(sky * 255).astype(np.uint8)


def _visibility(pix, depth, depth_map, size, supersample, tolerance):
  """Inside the frame and not behind the rendered surface by more than `tolerance`."""
  inside = (pix[:, 0] >= -0.5) & (pix[:, 0] < size - 0.5)
  inside &= (pix[:, 1] >= -0.5) & (pix[:, 1] < size - 0.5)
  inside &= depth > _NEAR
  big = size * supersample
  # Pixel-centre coordinates at the supersampled resolution: x_big = (x + 0.5) * f - 0.5.
  col = np.clip(np.round((pix[:, 0] + 0.5) * supersample - 0.5), 0, big - 1).astype(int)
  row = np.clip(np.round((pix[:, 1] + 0.5) * supersample - 0.5), 0, big - 1).astype(int)
  surface = depth_map[row, col]
  return inside & (depth <= surface + tolerance)


# ----------------------------------------------------------------------------------------------
# Whole dataset.


def _video_rng(seed, split_index, video_index):
  return np.random.default_rng(np.random.SeedSequence([seed, split_index, video_index]))


def _save_png(path, image):
  Image.fromarray(image).save(path, format="PNG", compress_level=6)


def synthesize_dataset(
  body,
  out_dir,
  train_videos,
  test_videos,
  frames,
  size=128,
  seed=0,
  progress=None,
  fps=30.0,
  supersample=None,
  contact_sheet=True,
  overwrite=False,
  background="mixed",
  clips=None,
):
  """Generates a synthetic dataset in the FOMM layout with the ground-truth side-car.

  Args:
    body: body name (see `bodies.BODIES`): ``humanoid_mocap``, ``kuka_iiwa`` or ``laikago``; or
      a numpy-only dataset of `LADDER_DATASETS` (``sprites``, ``figure2d``), which uses `out_dir`,
      the video counts, `frames`, `size`, `seed`, `progress`, `supersample`, `contact_sheet` and `overwrite` and ignores the rest.
    out_dir: dataset root to create.
    train_videos: number of training videos.
    test_videos: number of test videos.
    frames: frames per video T.
    size: frame size S (square).
    seed: non-negative integer; the same seed gives byte-identical files.
    progress: optional callable(done_frames, total_frames), called after every frame.
    fps: frame rate of the motion.
    supersample: anti-aliasing factor (1 = off); None = the generator's default (2 for the
      pybullet bodies, 4 for the ladder datasets).
    contact_sheet: also write ``contact_sheet.png``.
    overwrite: replace an existing non-empty `out_dir` (otherwise that is an error).
    background: "mixed" (default), "plain" or "textured" floors (see `_sample_appearance`).
    clips: optional list of motion clip names to draw from (default: all of the body's clips);
      e.g. `bodies.UPRIGHT_HUMANOID_CLIPS` for Tai-Chi-like standing motions.

  Returns:
    dict summary: ``out_dir``, ``body``, ``num_parts``, ``part_names``, ``landmark_names``,
    ``videos`` {split: count}, ``frames`` (total), ``seconds``, ``frames_per_second``.

  Raises:
    ConfigError: bad arguments (names the argument).
    DataError: `out_dir` exists and is not empty (without `overwrite`).
  """
  if body in LADDER_DATASETS:
    kwargs = {} if supersample is None else {"supersample": supersample}
    summary = ladder_generator(body)(
      out_dir,
      train_videos=train_videos,
      test_videos=test_videos,
      frames=frames,
      size=size,
      seed=seed,
      progress=progress,
      contact_sheet=contact_sheet,
      overwrite=overwrite,
      **kwargs,
    )
    return {"body": body, **summary}
  if body not in bodies_lib.BODIES:
    raise ConfigError(
      f"--body={body!r} is not a known body or dataset; choose one of {list(DATASET_NAMES)}"
    )
  spec = bodies_lib.get_body(body)
  supersample = 2 if supersample is None else supersample
  _check_args(train_videos, test_videos, frames, size, seed, fps, supersample)
  if background not in BACKGROUNDS:
    raise ConfigError(f"--background={background!r}: choose one of {', '.join(BACKGROUNDS)}")
  clips = list(clips) if clips else None
  if clips:
    unknown = [c for c in clips if c not in spec.clips]
    if unknown:
      raise ConfigError(
        f"--clips: body {spec.name} has no clip(s) {', '.join(unknown)}; "
        f"available: {', '.join(spec.clips) or '(procedural motion, no clips)'}"
      )
  out_dir = os.path.abspath(os.fspath(out_dir))
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise DataError(f"--out={out_dir} exists and is not a directory")
    if os.listdir(out_dir) and not overwrite:
      raise DataError(
        f"--out={out_dir} already exists and is not empty; remove it or use --overwrite"
      )
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
  counts = {"train": int(train_videos), "test": int(test_videos)}
  total = (counts["train"] + counts["test"]) * int(frames)
  done = [0]

  def on_frame():
    done[0] += 1
    if progress is not None:
      progress(done[0], total)

  start = time.perf_counter()
  scene = None
  try:
    scene = Scene(spec)
    videos_meta = {}
    sheet_rows = []
    for split_index, split in enumerate(SPLITS):
      videos_meta[split] = []
      for i in range(counts[split]):
        rng = _video_rng(seed, split_index, i)
        clip = clips[int(rng.integers(len(clips)))] if clips else None
        video = render_video(
          scene,
          rng,
          int(frames),
          int(size),
          float(fps),
          supersample,
          on_frame,
          clip=clip,
          background=background,
        )
        name = f"{i:05d}_{video['info']['clip']}"
        frame_dir = os.path.join(tmp, split, name)
        os.makedirs(frame_dir)
        for t in range(int(frames)):
          _save_png(os.path.join(frame_dir, f"{t:05d}.png"), video["frames"][t])
        write_ground_truth(
          os.path.join(tmp, "labels", split, name + ".npz"),
          parts=video["parts"],
          links=video["links"],
          landmarks=video["landmarks"],
          visible=video["visible"],
          part_names=spec.part_names,
          link_names=scene.link_names,
          landmark_names=spec.landmark_names,
        )
        videos_meta[split].append({"name": name, **video["info"]})
        if contact_sheet and len(sheet_rows) < (4 if split == "train" else 6):
          sheet_rows.append(_sheet_row(video, spec))
    meta = {
      "generator": GENERATOR_VERSION,
      "body": spec.name,
      "num_parts": spec.num_parts,
      "part_names": spec.part_names,
      "part_links": {name: list(links) for name, links in spec.parts},
      "link_names": scene.link_names,
      "landmark_names": spec.landmark_names,
      "visibility_tolerance_m": spec.visibility_tolerance,
      "size": int(size),
      "fps": float(fps),
      "frames_per_video": int(frames),
      "seed": int(seed),
      "supersample": int(supersample),
      "background": background,
      "clips": clips or list(spec.clips),
      "counts": counts,
      "videos": videos_meta,
    }
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
      f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if contact_sheet and sheet_rows:
      _save_png(os.path.join(tmp, "contact_sheet.png"), np.concatenate(sheet_rows, axis=0))
    sprites.publish_dataset(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  finally:
    if scene is not None:
      scene.close()
  seconds = time.perf_counter() - start
  return {
    "out_dir": out_dir,
    "body": spec.name,
    "num_parts": spec.num_parts,
    "part_names": spec.part_names,
    "landmark_names": spec.landmark_names,
    "videos": counts,
    "frames": total,
    "seconds": round(seconds, 3),
    "frames_per_second": round(total / seconds, 2) if seconds > 0 else None,
  }


def _check_args(train_videos, test_videos, frames, size, seed, fps, supersample):
  checks = [
    ("--train_videos", train_videos, train_videos >= 0),
    ("--test_videos", test_videos, test_videos >= 0),
    ("--frames", frames, frames >= 1),
    ("--size", size, size >= 16),
    ("--seed", seed, seed >= 0),
    ("--fps", fps, fps > 0),
    ("--supersample", supersample, 1 <= supersample <= 4),
  ]
  for flag, value, ok in checks:
    if not ok:
      raise ConfigError(f"{flag}={value} is out of range")
  if train_videos + test_videos < 1:
    raise ConfigError("--train_videos + --test_videos must be at least 1")


# ----------------------------------------------------------------------------------------------
# Contact sheet.


def colorize_parts(parts):
  """Part labels `[..., H, W]` -> RGB uint8 with `PALETTE` (0 = black)."""
  return PALETTE[np.asarray(parts) % len(PALETTE)]


def draw_landmarks(image, landmarks, visible, names, skeleton, scale=1):
  """Draws landmarks (filled = visible, hollow = hidden) and skeleton lines on an RGB image.

  Args:
    image: `[H, W, 3]` uint8 (already upscaled by `scale`).
    landmarks: `[L, 2]` pixel coordinates of the original-size frame.
    visible: `[L]` bool.
    names: L landmark names.
    skeleton: pairs of names to connect.
    scale: upscaling factor of `image` relative to the landmark coordinates.

  Returns:
    `[H, W, 3]` uint8.
  """
  pil = Image.fromarray(image)
  draw = ImageDraw.Draw(pil)
  pts = (np.asarray(landmarks, np.float64) + 0.5) * scale - 0.5
  index = {n: i for i, n in enumerate(names)}
  for a, b in skeleton:
    ia, ib = index[a], index[b]
    draw.line([tuple(pts[ia]), tuple(pts[ib])], fill=(255, 255, 255), width=1)
  r = max(1.5, scale * 1.2)
  for i, (x, y) in enumerate(pts):
    color = tuple(int(c) for c in PALETTE[1 + i % (len(PALETTE) - 1)])
    box = [x - r, y - r, x + r, y + r]
    if visible[i]:
      draw.ellipse(box, fill=color, outline=(0, 0, 0))
    else:
      draw.ellipse(box, outline=color)
  return np.asarray(pil)


def _sheet_row(video, spec, scale=None):
  """One row: for two frames (first, middle): frame | part map | frame + landmarks."""
  size = video["frames"].shape[1]
  scale = scale or max(1, 256 // size)
  tiles = []
  num_frames = len(video["frames"])
  for t in sorted({0, num_frames // 2}):
    frame = np.kron(video["frames"][t], np.ones((scale, scale, 1), np.uint8))
    parts = np.kron(colorize_parts(video["parts"][t]), np.ones((scale, scale, 1), np.uint8))
    marked = draw_landmarks(
      frame,
      video["landmarks"][t],
      video["visible"][t],
      spec.landmark_names,
      spec.skeleton,
      scale,
    )
    tiles += [frame, parts, marked]
  while len(tiles) < 6:
    tiles.append(np.zeros_like(tiles[0]))
  return np.concatenate(tiles, axis=1)


# ----------------------------------------------------------------------------------------------
# CLI.


def resolve_clips(names):
  """Expands the alias "upright" in a list of clip names."""
  out = []
  for name in names or ():
    out.extend(bodies_lib.UPRIGHT_HUMANOID_CLIPS if name == "upright" else [name])
  return out or None


def _define_flags():
  from absl import flags

  flags.DEFINE_enum(
    "body",
    "humanoid_mocap",
    list(DATASET_NAMES),
    "Body to render, or a numpy-only dataset (sprites, figure2d: no pybullet; only --out, the "
    "counts, --frames, --size, --seed, --supersample, --contact_sheet and --overwrite apply).",
  )
  flags.DEFINE_string("out", None, "Output dataset root (must not exist or be empty).")
  flags.DEFINE_integer("train_videos", 40, "Number of training videos.")
  flags.DEFINE_integer("test_videos", 10, "Number of test videos.")
  flags.DEFINE_integer("frames", 64, "Frames per video.")
  flags.DEFINE_integer("size", 128, "Frame size in pixels (square).")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives identical files.")
  flags.DEFINE_float("fps", 30.0, "Frame rate at which the motion is sampled.")
  flags.DEFINE_integer(
    "supersample",
    None,
    "Render at this multiple of --size and downsample (default 2; 4 for sprites/figure2d).",
  )
  flags.DEFINE_boolean("contact_sheet", True, "Write root/contact_sheet.png.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing --out folder.")
  flags.DEFINE_enum("background", "mixed", list(BACKGROUNDS), "Floor style.")
  flags.DEFINE_list(
    "clips", [], "Motion clips to draw from (default all; 'upright' = the standing humanoid clips)."
  )
  return flags.FLAGS


def main(argv):
  """absl entry point."""
  del argv
  from absl import flags

  FLAGS = flags.FLAGS
  if not FLAGS.out:
    print("error: --out is required", file=sys.stderr)
    sys.exit(2)
  last = [-1.0]

  def progress(done, total):
    pct = 100.0 * done / total
    if done == total or pct - last[0] >= 5.0:
      last[0] = pct
      print(f"synthesize: {done}/{total} frames ({pct:.0f}%)", flush=True)

  try:
    summary = synthesize_dataset(
      FLAGS.body,
      FLAGS.out,
      FLAGS.train_videos,
      FLAGS.test_videos,
      FLAGS.frames,
      size=FLAGS.size,
      seed=FLAGS.seed,
      progress=progress,
      fps=FLAGS.fps,
      supersample=FLAGS.supersample,
      contact_sheet=FLAGS.contact_sheet,
      overwrite=FLAGS.overwrite,
      background=FLAGS.background,
      clips=resolve_clips(FLAGS.clips),
    )
  except CopartError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(main)
