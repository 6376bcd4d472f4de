"""The pybullet scene: a DIRECT world with a floor and one body, posed, dressed and rendered.

The only module of `copart_tf.synthetic` that imports pybullet, and only when a `Scene` is made
(or `require_pybullet` is called): the numpy-only ladder datasets (sprites, figure2d) and the rest
of the package work without it. pybullet is the ``synthetic`` extra of the package
(``pip install copart_tf[synthetic]``).
"""

import contextlib
import os
import sys
import tempfile

import numpy as np
from PIL import Image

from copart_tf.errors import ConfigError
from copart_tf.synthetic import bodies as bodies_lib
from copart_tf.synthetic.appearance import _checker_texture
from copart_tf.synthetic.camera import render_projection

PYBULLET_INSTALL_HINT = "pip install copart_tf[synthetic] (or pybullet)"


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


def require_pybullet(what):
  """Imports pybullet; raises a one-line `ConfigError` ``<what> needs pybullet: pip install ...``
  when it is not installed (`what` names the flag, e.g. ``--body=humanoid_mocap``)."""
  try:
    return _import_pybullet()
  except ImportError:
    raise ConfigError(f"{what} needs pybullet: {PYBULLET_INSTALL_HINT}") from None


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
