"""Articulated bodies for the synthetic dataset: URDFs, part groupings, landmarks and motions.

Every body is described by a `BodySpec`: which pybullet_data URDF to load, how its links are grouped
into the K foreground parts of the ground truth (part 0 is the background, DESIGN.md §2), which
world points are its landmarks, and how to sample a motion (a list of kinematic poses, one per video
frame). No physics is simulated: poses are set with ``resetBasePositionAndOrientation`` /
``resetJointState(MultiDof)``.

The world is z-up with the floor at z = 0. Quaternions are (x, y, z, w), pybullet's order; the
DeepMimic motion files store (w, x, y, z) and are converted when read.

Bodies (K = number of foreground parts):

* ``humanoid_mocap`` (K = 10): the DeepMimic humanoid (``humanoid/humanoid.urdf``, scale 0.25,
  about 1.7 m tall; limbs lengthened and a neck, shoulder yoke and hip bar added so the shapes
  touch at the joints, see `patch_humanoid_urdf`) driven by the 15 DeepMimic mocap clips ``data/motions/humanoid3d_*.txt``.
  Parts: head, torso (chest + pelvis), left/right upper arm, left/right forearm + hand, left/right
  thigh, left/right shin + foot. 17 landmarks (head, neck, shoulders, elbows, wrists, pelvis, hips,
  knees, ankles, toes).
* ``kuka_iiwa`` (K = 5): the KUKA LBR iiwa arm (``kuka_iiwa/model.urdf``), fixed base, driven by
  smooth random joint trajectories (sums of low-frequency sinusoids inside the joint limits).
  Parts split the arm at its pitch joints 2, 4 and 6 (the roll joints 1, 3, 5, 7 turn a link about
  its own axis): base (link 0), shoulder (link 1), upper arm (links 2-3), forearm (links 4-5),
  wrist (links 6-7). 9 landmarks (base, the 7 joint centres, tool tip).
* ``laikago`` (K = 9): the Laikago quadruped (``laikago/laikago_toes.urdf``) driven by the mocap
  clip ``data/motions/laikago_walk.txt``. Parts: torso (chassis + the four hip motors, which only
  abduct a little), and per leg (FR, FL, RR, RL) an upper leg and a lower leg (+ toe). 14 landmarks
  (nose, tail, and per leg hip, knee, toe).

Mocap clips are played from a random start time; when a video is longer than the clip it plays
back and forth (ping-pong), which keeps the motion continuous (the clips' wrap-around frames jump
by 15-150 degrees). Treadmill: the least-squares linear trend of the root's horizontal position
over the video is subtracted, so a walking or cartwheeling body stays roughly in place (it still
sways) and the fixed camera can frame it tightly.
"""

import dataclasses
import functools
import json
import os
import xml.etree.ElementTree as ET

import numpy as np

from copart_tf.errors import ConfigError, DataError

HUMANOID_CLIPS = (
  "walk",
  "run",
  "jump",
  "kick",
  "punch",
  "dance_a",
  "dance_b",
  "cartwheel",
  "backflip",
  "spin",
  "spinkick",
  "roll",
  "crawl",
  "getup_facedown",
  "getup_faceup",
)
# Clips in which the person stays on their feet, like Tai-Chi-HD performers (no rolls, flips,
# crawling or getting up): the default of the synthetic humanoid benchmark.
UPRIGHT_HUMANOID_CLIPS = (
  "walk",
  "run",
  "jump",
  "kick",
  "punch",
  "dance_a",
  "dance_b",
  "spin",
  "spinkick",
)


@dataclasses.dataclass(frozen=True)
class Landmark:
  """A keypoint rigidly attached to a link.

  Attributes:
    name: landmark name.
    link: name of the link it is attached to (the body's base link name for the base).
    offset: `(3,)` position in the link's URDF frame (the joint frame), metres after scaling.
  """

  name: str
  link: str
  offset: tuple = (0.0, 0.0, 0.0)


@dataclasses.dataclass
class Pose:
  """A kinematic pose of a body.

  Attributes:
    base_pos: `(3,)` world position of the base.
    base_orn: `(4,)` world orientation of the base, quaternion (x, y, z, w).
    joints: dict joint name -> list of joint positions (1 value for revolute joints, a quaternion
      (x, y, z, w) for spherical joints).
  """

  base_pos: np.ndarray
  base_orn: np.ndarray
  joints: dict


@dataclasses.dataclass
class Motion:
  """A motion sampled for one video.

  Attributes:
    clip: clip name (mocap file stem or ``random``).
    poses: one `Pose` per video frame.
    params: JSON-serialisable description for meta.json (start time, playback mode ...).
  """

  clip: str
  poses: list
  params: dict


@dataclasses.dataclass(frozen=True)
class BodySpec:
  """Everything the generator needs to know about one body.

  Attributes:
    name: body name (the ``--body`` flag value).
    urdf: URDF path relative to ``pybullet_data.getDataPath()``.
    global_scaling: URDF scale factor.
    parts: tuple of (part name, tuple of link names); part i+1 of the ground truth is entry i.
    landmarks: tuple of `Landmark`.
    skeleton: landmark-name pairs drawn as lines on the contact sheet.
    visibility_tolerance: metres; a landmark is visible when it is at most this much behind the
      rendered surface at its pixel (landmarks sit inside limbs, about one limb radius deep).
    clips: motion clips the sampler chooses from (empty for procedural motion).
    floor_clearance: if not None, motions whose moving links dip below this height are resampled.
    texture_free: strip the URDF's own textures so the random colours show.
    urdf_patch: optional callable(URDF text) -> URDF text applied before loading.
  """

  name: str
  urdf: str
  global_scaling: float
  parts: tuple
  landmarks: tuple
  skeleton: tuple
  visibility_tolerance: float
  clips: tuple = ()
  floor_clearance: float | None = None
  texture_free: bool = False
  urdf_patch: object = None

  @property
  def num_parts(self):
    """K, the number of foreground parts."""
    return len(self.parts)

  @property
  def part_names(self):
    """K+1 part names, ``[0] == 'background'``."""
    return ["background"] + [name for name, _ in self.parts]

  @property
  def landmark_names(self):
    """L landmark names."""
    return [lm.name for lm in self.landmarks]

  def sample_motion(self, rng, num_frames, fps, data_path, clip=None):
    """Samples a motion for one video.

    Args:
      rng: `np.random.Generator`.
      num_frames: number of video frames T.
      fps: video frame rate.
      data_path: ``pybullet_data.getDataPath()``.
      clip: force this clip (one of `clips`) instead of a random one.

    Returns:
      A `Motion` with T poses.
    """
    times = np.arange(num_frames, dtype=np.float64) / float(fps)
    if self.clips:
      choice = self.clips[int(rng.integers(len(self.clips)))]
      if clip is not None:
        if clip not in self.clips:
          raise ConfigError(f"body {self.name} has no clip {clip!r}; clips are {list(self.clips)}")
        choice = clip
    if self.name == "humanoid_mocap":
      path = os.path.join(data_path, "data", "motions", f"humanoid3d_{choice}.txt")
      return _humanoid_motion(path, choice, rng, times)
    if self.name == "laikago":
      path = os.path.join(data_path, "data", "motions", f"laikago_{choice}.txt")
      return _laikago_motion(path, choice, rng, times)
    if self.name == "kuka_iiwa":
      return _kuka_motion(rng, times)
    raise ConfigError(f"no motion sampler for body {self.name!r}")


# ----------------------------------------------------------------------------------------------
# Quaternion helpers, (x, y, z, w) order, vectorised over leading axes.


def quat_mul(a, b):
  """Hamilton product of quaternions `[..., 4]` (x, y, z, w)."""
  ax, ay, az, aw = np.moveaxis(np.asarray(a, np.float64), -1, 0)
  bx, by, bz, bw = np.moveaxis(np.asarray(b, np.float64), -1, 0)
  return np.stack(
    [
      aw * bx + ax * bw + ay * bz - az * by,
      aw * by - ax * bz + ay * bw + az * bx,
      aw * bz + ax * by - ay * bx + az * bw,
      aw * bw - ax * bx - ay * by - az * bz,
    ],
    axis=-1,
  )


def quat_rotate(q, v):
  """Rotates vectors `[..., 3]` by unit quaternions `[..., 4]` (x, y, z, w)."""
  q = np.asarray(q, np.float64)
  v = np.asarray(v, np.float64)
  u = q[..., :3]
  w = q[..., 3:4]
  t = 2.0 * np.cross(u, v)
  return v + w * t + np.cross(u, t)


def quat_slerp(q0, q1, frac):
  """Spherical interpolation between unit quaternions `[N, 4]` with fractions `[N]`."""
  q0 = np.asarray(q0, np.float64)
  q1 = np.asarray(q1, np.float64)
  frac = np.asarray(frac, np.float64)[..., None]
  dot = np.sum(q0 * q1, axis=-1, keepdims=True)
  q1 = np.where(dot < 0.0, -q1, q1)
  dot = np.abs(dot)
  theta = np.arccos(np.clip(dot, -1.0, 1.0))
  sin_theta = np.sin(theta)
  small = sin_theta < 1e-6
  safe = np.where(small, 1.0, sin_theta)
  w0 = np.where(small, 1.0 - frac, np.sin((1.0 - frac) * theta) / safe)
  w1 = np.where(small, frac, np.sin(frac * theta) / safe)
  out = w0 * q0 + w1 * q1
  return out / np.linalg.norm(out, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Mocap playback.


@functools.lru_cache(maxsize=32)
def _load_mocap(path):
  """Reads a DeepMimic motion file -> (`[N]` key times, `[N, D]` frames)."""
  try:
    with open(path, encoding="utf-8") as f:
      frames = np.asarray(json.load(f)["Frames"], dtype=np.float64)
  except (OSError, ValueError, KeyError) as e:
    raise DataError(f"cannot read mocap clip {path}: {e}") from e
  if frames.ndim != 2 or len(frames) < 2:
    raise DataError(f"mocap clip {path} has no frames")
  times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
  return times, frames


def _clip_times(rng, times, clip_duration):
  """Maps video times to clip times: random start, ping-pong when the video is longer."""
  video_duration = float(times[-1]) if len(times) else 0.0
  if video_duration <= clip_duration:
    start = float(rng.uniform(0.0, clip_duration - video_duration))
    return start + times, {"start_time": round(start, 6), "playback": "forward"}
  start = float(rng.uniform(0.0, 2.0 * clip_duration))
  phase = np.mod(start + times, 2.0 * clip_duration)
  clip_t = np.where(phase <= clip_duration, phase, 2.0 * clip_duration - phase)
  return clip_t, {"start_time": round(start, 6), "playback": "pingpong"}


def _interp_index(key_times, t):
  """Index of the key frame before t and the fraction to the next one."""
  idx = np.clip(np.searchsorted(key_times, t, side="right") - 1, 0, len(key_times) - 2)
  span = key_times[idx + 1] - key_times[idx]
  frac = np.clip((t - key_times[idx]) / np.maximum(span, 1e-9), 0.0, 1.0)
  return idx, frac


def _treadmill(pos, times, axes):
  """Subtracts the least-squares linear trend over time of the given position axes."""
  pos = pos.copy()
  if len(times) < 2:
    return pos
  design = np.stack([np.ones_like(times), times], axis=1)
  for ax in axes:
    coef, *_ = np.linalg.lstsq(design, pos[:, ax], rcond=None)
    pos[:, ax] -= design @ coef
  return pos


def _wxyz_to_xyzw(q):
  return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


# DeepMimic humanoid frame layout: [duration, root pos (3), root quat (4, wxyz), then per joint a
# quaternion (wxyz) or one angle], joints in this order (URDF joint name, number of values).
_HUMANOID_JOINTS = (
  ("chest", 4),
  ("neck", 4),
  ("right_hip", 4),
  ("right_knee", 1),
  ("right_ankle", 4),
  ("right_shoulder", 4),
  ("right_elbow", 1),
  ("left_hip", 4),
  ("left_knee", 1),
  ("left_ankle", 4),
  ("left_shoulder", 4),
  ("left_elbow", 1),
)

# DeepMimic data is y-up; rotate +90 degrees about x so it becomes z-up (y -> z, z -> -y).
_Y_UP_TO_Z_UP = np.array([np.sin(np.pi / 4), 0.0, 0.0, np.cos(np.pi / 4)])


def _humanoid_motion(path, clip, rng, times):
  key_times, frames = _load_mocap(path)
  clip_t, params = _clip_times(rng, times, float(key_times[-1]))
  idx, frac = _interp_index(key_times, clip_t)
  f0, f1 = frames[idx], frames[idx + 1]
  root = f0[:, 1:4] + frac[:, None] * (f1[:, 1:4] - f0[:, 1:4])
  root = _treadmill(root, times, axes=(0, 2))  # y-up data: x and z are horizontal
  root_orn = quat_slerp(_wxyz_to_xyzw(f0[:, 4:8]), _wxyz_to_xyzw(f1[:, 4:8]), frac)
  base_pos = quat_rotate(_Y_UP_TO_Z_UP, root)
  base_orn = quat_mul(_Y_UP_TO_Z_UP, root_orn)
  joint_values = {}
  col = 8
  for joint, size in _HUMANOID_JOINTS:
    if size == 4:
      joint_values[joint] = quat_slerp(
        _wxyz_to_xyzw(f0[:, col : col + 4]), _wxyz_to_xyzw(f1[:, col : col + 4]), frac
      )
    else:
      joint_values[joint] = (f0[:, col] + frac * (f1[:, col] - f0[:, col]))[:, None]
    col += size
  poses = [
    Pose(base_pos[i], base_orn[i], {j: v[i].tolist() for j, v in joint_values.items()})
    for i in range(len(times))
  ]
  return Motion(clip, poses, params)


# Laikago mocap (DeepMimic format, 20 columns): [duration, pos (3), quat (4, wxyz), 12 angles in the
# URDF's revolute-joint order FR, FL, RR, RL x (hip, upper, lower)]. The mapping to
# laikago_toes.urdf (mirrored position, reordered quaternion, joint signs and offsets) follows
# pybullet_envs/deep_mimic/env/testLaikago.py (kinematic mode).
_LAIKAGO_JOINTS = tuple(
  f"{leg}_{joint}"
  for leg in ("FR", "FL", "RR", "RL")
  for joint in (
    "hip_motor_2_chassis_joint",
    "upper_leg_2_hip_motor_joint",
    "lower_leg_2_upper_leg_joint",
  )
)
_LAIKAGO_DIRECTIONS = np.array([-1, 1, 1, 1, 1, 1, -1, 1, 1, 1, 1, 1], np.float64)
_LAIKAGO_OFFSETS = np.array([0.0, -0.7, 0.7] * 4)


def _laikago_motion(path, clip, rng, times):
  key_times, frames = _load_mocap(path)
  clip_t, params = _clip_times(rng, times, float(key_times[-1]))
  idx, frac = _interp_index(key_times, clip_t)
  f0, f1 = frames[idx], frames[idx + 1]
  pos = f0[:, 1:4] + frac[:, None] * (f1[:, 1:4] - f0[:, 1:4])
  pos = pos * np.array([-1.0, -1.0, 1.0])
  pos = _treadmill(pos, times, axes=(0, 1))
  q = quat_slerp(_wxyz_to_xyzw(f0[:, 4:8]), _wxyz_to_xyzw(f1[:, 4:8]), frac)
  orn = q[:, [1, 2, 3, 0]]
  angles = f0[:, 8:20] + frac[:, None] * (f1[:, 8:20] - f0[:, 8:20])
  angles = angles * _LAIKAGO_DIRECTIONS + _LAIKAGO_OFFSETS
  poses = [
    Pose(pos[i], orn[i], {j: [float(angles[i, k])] for k, j in enumerate(_LAIKAGO_JOINTS)})
    for i in range(len(times))
  ]
  return Motion(clip, poses, params)


# KUKA iiwa joint ranges used for random motion (radians): the URDF limits, narrowed for the
# pitch joints 2, 4, 6 so the arm does not fold through the floor or its own base.
_KUKA_RANGES = np.array(
  [[-2.9, 2.9], [-1.0, 1.0], [-2.9, 2.9], [-1.7, 1.7], [-2.9, 2.9], [-1.8, 1.8], [-3.0, 3.0]]
)


def _kuka_motion(rng, times):
  num_joints = len(_KUKA_RANGES)
  lo, hi = _KUKA_RANGES[:, 0], _KUKA_RANGES[:, 1]
  mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
  centre = rng.uniform(-0.4, 0.4, size=num_joints)
  amp = rng.uniform(0.25, 0.6, size=(num_joints, 2))
  amp *= (1.0 - np.abs(centre))[:, None] / np.maximum(amp.sum(axis=1, keepdims=True), 1.0)
  freq = rng.uniform(0.1, 0.5, size=(num_joints, 2))
  phase = rng.uniform(0.0, 2.0 * np.pi, size=(num_joints, 2))
  s = centre[None, :] + np.sum(
    amp[None] * np.sin(2.0 * np.pi * freq[None] * times[:, None, None] + phase[None]), axis=-1
  )
  q = mid[None, :] + half[None, :] * np.clip(s, -1.0, 1.0)
  zeros = np.zeros(3)
  identity = np.array([0.0, 0.0, 0.0, 1.0])
  poses = [
    Pose(zeros, identity, {f"lbr_iiwa_joint_{j + 1}": [float(q[i, j])] for j in range(num_joints)})
    for i in range(len(times))
  ]
  params = {"frequencies_hz": np.round(freq, 4).tolist()}
  return Motion("random", poses, params)


# ----------------------------------------------------------------------------------------------
# Humanoid geometry fix.

# (link, capsule length) in URDF units (before the 0.25 scaling): the original capsules stop 0.02-0.05
# short of the joints, so limbs float apart; these lengths make neighbouring shapes overlap.
_HUMANOID_CAPSULE_LENGTHS = {
  "right_hip": 1.34,
  "left_hip": 1.34,
  "right_knee": 1.34,
  "left_knee": 1.34,
  "right_shoulder": 0.80,
  "left_shoulder": 0.80,
  "right_elbow": 0.70,
  "left_elbow": 0.70,
}
# Extra shapes (link, origin xyz, origin rpy, capsule length, radius): a neck, a shoulder yoke
# joining the chest sphere to both shoulder joints, an abdomen joining pelvis and chest, and a hip
# bar joining the pelvis to the hips.
_HUMANOID_EXTRA_CAPSULES = (
  ("neck", "0 0.3 0", "-1.570796 0 0", 0.35, 0.14),
  ("chest", "-0.096 0.9 0", "0 0 0", 1.2, 0.16),
  ("root", "0 0.8 0", "-1.570796 0 0", 0.5, 0.3),
  ("root", "0 0.05 0", "0 0 0", 0.6, 0.24),
)


def patch_humanoid_urdf(text):
  """Closes the gaps of the DeepMimic humanoid (limbs 1-11 cm apart at every joint).

  The original model's head floats above the chest and the arms and legs stop short of their
  joints, so parts would be separable by the background showing between them. We lengthen the
  limb capsules and add a neck, and a shoulder yoke, an abdomen and a hip bar (all torso). Only
  the rendered shapes change; joints, and therefore the mocap playback, are untouched.

  Args:
    text: the URDF text of ``humanoid/humanoid.urdf``.

  Returns:
    The patched URDF text.
  """
  root = ET.fromstring(text.replace("\x00", "").strip())
  links = {link.get("name"): link for link in root.iter("link")}
  for name, length in _HUMANOID_CAPSULE_LENGTHS.items():
    capsule = links[name].find("collision/geometry/capsule")
    capsule.set("length", f"{length:.6f}")
  for name, xyz, rpy, length, radius in _HUMANOID_EXTRA_CAPSULES:
    collision = ET.SubElement(links[name], "collision")
    ET.SubElement(collision, "origin", {"rpy": rpy, "xyz": xyz})
    geometry = ET.SubElement(collision, "geometry")
    ET.SubElement(geometry, "capsule", {"length": f"{length:.6f}", "radius": f"{radius:.6f}"})
  return ET.tostring(root, encoding="unicode")


# ----------------------------------------------------------------------------------------------
# The bodies.

_S = 0.25  # humanoid global scaling

HUMANOID = BodySpec(
  name="humanoid_mocap",
  urdf="humanoid/humanoid.urdf",
  global_scaling=_S,
  parts=(
    ("head", ("neck",)),
    ("torso", ("base", "root", "chest")),
    ("left_upper_arm", ("left_shoulder",)),
    ("left_forearm", ("left_elbow", "left_wrist")),
    ("right_upper_arm", ("right_shoulder",)),
    ("right_forearm", ("right_elbow", "right_wrist")),
    ("left_thigh", ("left_hip",)),
    ("left_shin", ("left_knee", "left_ankle")),
    ("right_thigh", ("right_hip",)),
    ("right_shin", ("right_knee", "right_ankle")),
  ),
  landmarks=(
    Landmark("head", "neck", (0.0, 0.7 * _S, 0.0)),
    Landmark("neck", "neck"),
    Landmark("right_shoulder", "right_shoulder"),
    Landmark("right_elbow", "right_elbow"),
    Landmark("right_wrist", "right_wrist"),
    Landmark("left_shoulder", "left_shoulder"),
    Landmark("left_elbow", "left_elbow"),
    Landmark("left_wrist", "left_wrist"),
    Landmark("pelvis", "root", (0.0, 0.28 * _S, 0.0)),
    Landmark("right_hip", "right_hip"),
    Landmark("right_knee", "right_knee"),
    Landmark("right_ankle", "right_ankle"),
    Landmark("right_toe", "right_ankle", (0.48 * _S, -0.09 * _S, 0.0)),
    Landmark("left_hip", "left_hip"),
    Landmark("left_knee", "left_knee"),
    Landmark("left_ankle", "left_ankle"),
    Landmark("left_toe", "left_ankle", (0.48 * _S, -0.09 * _S, 0.0)),
  ),
  skeleton=(
    ("head", "neck"),
    ("neck", "right_shoulder"),
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("neck", "left_shoulder"),
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("neck", "pelvis"),
    ("pelvis", "right_hip"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("right_ankle", "right_toe"),
    ("pelvis", "left_hip"),
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("left_ankle", "left_toe"),
  ),
  visibility_tolerance=0.12,
  clips=HUMANOID_CLIPS,
  urdf_patch=patch_humanoid_urdf,
)

KUKA = BodySpec(
  name="kuka_iiwa",
  urdf="kuka_iiwa/model.urdf",
  global_scaling=1.0,
  parts=(
    ("base", ("lbr_iiwa_link_0",)),
    ("shoulder", ("lbr_iiwa_link_1",)),
    ("upper_arm", ("lbr_iiwa_link_2", "lbr_iiwa_link_3")),
    ("forearm", ("lbr_iiwa_link_4", "lbr_iiwa_link_5")),
    ("wrist", ("lbr_iiwa_link_6", "lbr_iiwa_link_7")),
  ),
  landmarks=(
    Landmark("base", "lbr_iiwa_link_0", (0.0, 0.0, 0.08)),
    Landmark("joint_1", "lbr_iiwa_link_1"),
    Landmark("joint_2", "lbr_iiwa_link_2"),
    Landmark("joint_3", "lbr_iiwa_link_3"),
    Landmark("joint_4", "lbr_iiwa_link_4"),
    Landmark("joint_5", "lbr_iiwa_link_5"),
    Landmark("joint_6", "lbr_iiwa_link_6"),
    Landmark("joint_7", "lbr_iiwa_link_7"),
    Landmark("tool_tip", "lbr_iiwa_link_7", (0.0, 0.0, 0.045)),
  ),
  skeleton=(
    ("base", "joint_1"),
    ("joint_1", "joint_2"),
    ("joint_2", "joint_3"),
    ("joint_3", "joint_4"),
    ("joint_4", "joint_5"),
    ("joint_5", "joint_6"),
    ("joint_6", "joint_7"),
    ("joint_7", "tool_tip"),
  ),
  visibility_tolerance=0.12,
  floor_clearance=0.03,
)

_LEGS = ("FR", "FL", "RR", "RL")

LAIKAGO = BodySpec(
  name="laikago",
  urdf="laikago/laikago_toes.urdf",
  global_scaling=1.0,
  parts=(("torso", ("chassis",) + tuple(f"{leg}_hip_motor" for leg in _LEGS)),)
  + tuple(
    (f"{leg}_{seg}", links)
    for leg in _LEGS
    for seg, links in (
      ("upper_leg", (f"{leg}_upper_leg",)),
      ("lower_leg", (f"{leg}_lower_leg", f"toe{leg}")),
    )
  ),
  landmarks=(
    Landmark("nose", "chassis", (0.0, 0.03, 0.31)),
    Landmark("tail", "chassis", (0.0, 0.03, -0.25)),
  )
  + tuple(
    Landmark(f"{leg}_{name}", link)
    for leg in _LEGS
    for name, link in (
      ("hip", f"{leg}_upper_leg"),
      ("knee", f"{leg}_lower_leg"),
      ("toe", f"toe{leg}"),
    )
  ),
  skeleton=(("nose", "tail"),)
  + tuple(
    pair for leg in _LEGS for pair in ((f"{leg}_hip", f"{leg}_knee"), (f"{leg}_knee", f"{leg}_toe"))
  ),
  visibility_tolerance=0.08,
  clips=("walk",),
  texture_free=True,
)

BODIES = {spec.name: spec for spec in (HUMANOID, KUKA, LAIKAGO)}


def get_body(name):
  """Returns the `BodySpec` called `name`; raises `ConfigError` naming the choices otherwise."""
  try:
    return BODIES[name]
  except KeyError:
    raise ConfigError(
      f"--body={name!r} is not a known body; choose one of {sorted(BODIES)}"
    ) from None
