r"""Synthetic "quality ladder" dataset 2: a flat 2D articulated figure of 10 capsules (numpy).

Usage::

  python -m copart_tf.synthetic.figure2d --out=data/figure2d  # 200 train + 20 test, 32 x 64px

or `synthesize_figure2d_dataset(root, ...)`, or ``python -m copart_tf.train
--synthesize_if_missing=figure2d`` (through `copart_tf.synthetic.synthesize_dataset`).

The figure faces the viewer (its left side is on the image's right) and is made of 10 capsules:
torso, head, left/right upper arm, left/right lower arm, left/right thigh, left/right shin, each a
flat colour (10 distinct saturated colours per video) on a plain background of a random,
less saturated colour far from all of them. Body proportions vary by +-8 % per video.

Motion: a kinematic tree rooted at the pelvis. Every joint angle is ``mid + amp * s(t)`` with s a
normalised sum of three random sinusoids (periods 16-64 frames), inside these limits (degrees):
torso lean +-12, neck +-20, shoulder abduction -25..120 (negative = across the torso), elbow
flexion 0..130 (towards the body), hip abduction -10..40, knee flexion 0..100 (outwards). The
pelvis drifts by a few pixels. The scale is chosen per video so that the figure covers a random
17-23 % of the frame at its first frame (shrunk if the motion would leave the frame), and the
motion is centred in the frame with a random offset inside the slack.

Measured on the default dataset (220 videos x 32 frames, 64 px, seed 0): the figure covers
19.5 % of the frame pixels on average, 5-95 % of the frames within 17.0-22.1 %, extremes
15.5-23.6 %, and never touches the frame border.

Draw order (back to front): left thigh, left shin, left upper arm, left lower arm, torso, head,
right thigh, right shin, right upper arm, right lower arm, i.e. the figure's left side is the far
side. Rendering and labels as `copart_tf.synthetic.sprites` (supersampled RGB, labels = topmost
part at each pixel centre).

Side-car: ``parts`` = ``links`` in 1..10 (`PART_NAMES`); ``landmarks`` `[T, 14, 2]` = joints
(`LANDMARK_NAMES`: head top, neck, shoulders, elbows, wrists, hips, knees, ankles) in pixels;
``visible`` = inside the frame and the part labelled at the joint's pixel is one of the parts
meeting there (so a wrist behind the torso is hidden). Extras as sprites: ``poses`` float32
`[T, 10, 2, 3]` (t = capsule centre, A = R(axis angle) diag(std along the axis, std across) in
normalised units, A A^T = the capsule's covariance), ``pose_visible`` (centre inside the frame and
at least one pixel labelled) and ``visible_fraction`` (labelled pixels / analytic capsule area).

Per-video RNG ``default_rng(SeedSequence([seed, split, index]))``: same seed, identical bytes.
"""

import numpy as np

from copart_tf.synthetic import sprites
from copart_tf.synthetic.sprites import Shape

# The generator's name in meta.json (its module path when it was written, kept across the move).
GENERATOR_VERSION = "copart_tf.data.figure2d/1"
PART_NAMES = [
  "background",
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
]
NUM_PARTS = len(PART_NAMES) - 1
PART_ID = {name: i for i, name in enumerate(PART_NAMES)}
DRAW_ORDER = [
  "left_thigh",
  "left_shin",
  "left_upper_arm",
  "left_lower_arm",
  "torso",
  "head",
  "right_thigh",
  "right_shin",
  "right_upper_arm",
  "right_lower_arm",
]
# Landmark -> the parts meeting at it (for the occlusion test).
LANDMARKS = {
  "head_top": ("head",),
  "neck": ("torso", "head"),
  "left_shoulder": ("torso", "left_upper_arm"),
  "right_shoulder": ("torso", "right_upper_arm"),
  "left_elbow": ("left_upper_arm", "left_lower_arm"),
  "right_elbow": ("right_upper_arm", "right_lower_arm"),
  "left_wrist": ("left_lower_arm",),
  "right_wrist": ("right_lower_arm",),
  "left_hip": ("torso", "left_thigh"),
  "right_hip": ("torso", "right_thigh"),
  "left_knee": ("left_thigh", "left_shin"),
  "right_knee": ("right_thigh", "right_shin"),
  "left_ankle": ("left_shin",),
  "right_ankle": ("right_shin",),
}
LANDMARK_NAMES = list(LANDMARKS)
SKELETON = [
  ("head_top", "neck"),
  ("neck", "left_shoulder"),
  ("neck", "right_shoulder"),
  ("left_shoulder", "left_elbow"),
  ("left_elbow", "left_wrist"),
  ("right_shoulder", "right_elbow"),
  ("right_elbow", "right_wrist"),
  ("neck", "left_hip"),
  ("neck", "right_hip"),
  ("left_hip", "left_knee"),
  ("left_knee", "left_ankle"),
  ("right_hip", "right_knee"),
  ("right_knee", "right_ankle"),
]
DEFAULTS = dict(sprites.DEFAULTS)

# Body in units of about the standing height: segment lengths and capsule radii.
_BODY = {
  "torso_length": 0.30,
  "torso_radius": 0.105,
  "neck_to_head": 0.125,  # neck -> head centre
  "head_half": 0.02,  # half-length of the head's core segment
  "head_radius": 0.085,
  "shoulder_drop": 0.045,  # below the neck, along the torso
  "shoulder_width": 0.085,  # half the distance between the shoulders
  "hip_width": 0.055,
  "upper_arm": 0.15,
  "upper_arm_radius": 0.042,
  "lower_arm": 0.14,
  "lower_arm_radius": 0.036,
  "thigh": 0.20,
  "thigh_radius": 0.055,
  "shin": 0.19,
  "shin_radius": 0.045,
}
# Joint limits in degrees.
_LIMITS = {
  "lean": (-12.0, 12.0),
  "neck": (-20.0, 20.0),
  "shoulder": (-25.0, 120.0),
  "elbow": (0.0, 130.0),
  "hip": (-10.0, 40.0),
  "knee": (0.0, 100.0),
}
_SIDES = {"left": 1.0, "right": -1.0}  # +1 = image right (the figure faces the viewer)
_FRACTION_RANGE = (0.17, 0.23)
_MAX_EXTENT = 0.94  # of the frame, over all frames


def _direction(angle):
  return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def _joint_signal(rng, num_frames, limits):
  lo, hi = np.radians(limits[0]), np.radians(limits[1])
  span = hi - lo
  mid = rng.uniform(lo + 0.25 * span, hi - 0.25 * span)
  amp = rng.uniform(0.4, 1.0) * min(mid - lo, hi - mid)
  return mid + amp * sprites.smooth_signal(rng, num_frames, periods=(16.0, 64.0), terms=3)


def sample_motion(rng, num_frames):
  """Body proportions and per-frame joint angles (radians) and pelvis drift (body units)."""
  body = {k: v * rng.uniform(0.92, 1.08) for k, v in _BODY.items()}
  angles = {"lean": _joint_signal(rng, num_frames, _LIMITS["lean"])}
  angles["neck"] = _joint_signal(rng, num_frames, _LIMITS["neck"])
  for side in _SIDES:
    for joint in ("shoulder", "elbow", "hip", "knee"):
      angles[f"{side}_{joint}"] = _joint_signal(rng, num_frames, _LIMITS[joint])
  drift = np.stack(
    [0.04 * sprites.smooth_signal(rng, num_frames) for _ in range(2)], axis=-1
  )  # [T, 2]
  return body, angles, drift


def skeleton(body, angles, drift):
  """Capsules (endpoints, radius per part) and landmarks of all frames, body units.

  Returns:
    (capsules: dict part -> (p0 `[T, 2]`, p1 `[T, 2]`, radius), landmarks: dict name -> `[T, 2]`).
  """
  up = -np.pi / 2.0 + angles["lean"]  # torso direction pelvis -> neck (y is down)
  d_up = _direction(up)
  d_side = _direction(up + np.pi / 2.0)  # towards the image right when upright
  pelvis = drift
  neck = pelvis + body["torso_length"] * d_up
  head_dir = _direction(up + angles["neck"])
  head_centre = neck + body["neck_to_head"] * head_dir
  caps = {
    "torso": (pelvis, neck, body["torso_radius"]),
    "head": (
      head_centre - body["head_half"] * head_dir,
      head_centre + body["head_half"] * head_dir,
      body["head_radius"],
    ),
  }
  marks = {
    "head_top": head_centre + (body["head_half"] + 0.5 * body["head_radius"]) * head_dir,
    "neck": neck,
  }
  down = up + np.pi
  for side, s in _SIDES.items():
    shoulder = neck - body["shoulder_drop"] * d_up + s * body["shoulder_width"] * d_side
    upper = down - s * angles[f"{side}_shoulder"]
    elbow = shoulder + body["upper_arm"] * _direction(upper)
    wrist = elbow + body["lower_arm"] * _direction(upper + s * angles[f"{side}_elbow"])
    hip = pelvis + s * body["hip_width"] * d_side
    thigh = down - s * angles[f"{side}_hip"]
    knee = hip + body["thigh"] * _direction(thigh)
    ankle = knee + body["shin"] * _direction(thigh - s * angles[f"{side}_knee"])
    caps[f"{side}_upper_arm"] = (shoulder, elbow, body["upper_arm_radius"])
    caps[f"{side}_lower_arm"] = (elbow, wrist, body["lower_arm_radius"])
    caps[f"{side}_thigh"] = (hip, knee, body["thigh_radius"])
    caps[f"{side}_shin"] = (knee, ankle, body["shin_radius"])
    marks.update(
      {
        f"{side}_shoulder": shoulder,
        f"{side}_elbow": elbow,
        f"{side}_wrist": wrist,
        f"{side}_hip": hip,
        f"{side}_knee": knee,
        f"{side}_ankle": ankle,
      }
    )
  return caps, marks


def capsule_shape(p0, p1, radius):
  """The `sprites.Shape` of a capsule around the segment p0 -> p1 (pixels)."""
  d = np.asarray(p1, np.float64) - np.asarray(p0, np.float64)
  centre = (np.asarray(p0, np.float64) + np.asarray(p1, np.float64)) / 2.0
  return Shape(
    "capsule",
    float(centre[0]),
    float(centre[1]),
    float(np.arctan2(d[1], d[0])),
    float(np.hypot(d[0], d[1]) / 2.0 + radius),
    float(radius),
  )


def frame_shapes(caps, t, scale, offset):
  """dict part -> `Shape` (pixels) at frame t for a body->pixel map x * scale + offset."""
  return {
    name: capsule_shape(p0[t] * scale + offset, p1[t] * scale + offset, r * scale)
    for name, (p0, p1, r) in caps.items()
  }


def _extent(caps):
  """(min `[2]`, max `[2]`) over all frames of the capsules' bounding boxes, body units."""
  lo = np.full(2, np.inf)
  hi = np.full(2, -np.inf)
  for p0, p1, r in caps.values():
    for p in (p0, p1):
      lo = np.minimum(lo, p.min(axis=0) - r)
      hi = np.maximum(hi, p.max(axis=0) + r)
  return lo, hi


def _render(shapes, colors, background, size, supersample):
  order = DRAW_ORDER
  return sprites.render_shapes(
    [shapes[n] for n in order],
    [colors[PART_ID[n] - 1] for n in order],
    [PART_ID[n] for n in order],
    background,
    size,
    supersample,
  )


def render_figure_video(rng, num_frames, size=64, supersample=4):
  """Samples and renders one figure video.

  Returns:
    dict as `sprites.render_sprites_video` (``frames``, ``parts``, ``landmarks``, ``visible``,
    ``extra``, ``shapes`` (per frame, part name -> `Shape` in pixels), ``info``).
  """
  colors, background = sprites.sample_colors(rng, NUM_PARTS, min_distance=80.0)
  body, angles, drift = sample_motion(rng, num_frames)
  caps, marks = skeleton(body, angles, drift)
  lo, hi = _extent(caps)
  # Scale: the target fraction at frame 0, measured on a trial render, then capped by the extent.
  target = rng.uniform(*_FRACTION_RANGE)
  trial = 0.8 * size
  trial_centre = size / 2.0 - 0.5 - trial * (lo + hi) / 2.0
  _, labels = _render(frame_shapes(caps, 0, trial, trial_centre), colors, background, size, 1)
  covered = np.count_nonzero(labels) / float(size * size)
  scale = trial * np.sqrt(target / max(covered, 1e-6))
  scale = min(scale, _MAX_EXTENT * size / float(np.max(hi - lo)))
  slack = np.maximum(_MAX_EXTENT * size - scale * (hi - lo), 0.0)
  offset = size / 2.0 - 0.5 - scale * (lo + hi) / 2.0 + rng.uniform(-0.5, 0.5, 2) * slack

  frames = np.zeros((num_frames, size, size, 3), np.uint8)
  parts = np.zeros((num_frames, size, size), np.uint8)
  num_marks = len(LANDMARK_NAMES)
  landmarks = np.stack([marks[n] * scale + offset for n in LANDMARK_NAMES], axis=1)
  landmarks = landmarks.astype(np.float32)  # [T, L, 2]
  visible = np.zeros((num_frames, num_marks), bool)
  poses = np.zeros((num_frames, NUM_PARTS, 2, 3), np.float32)
  pose_visible = np.zeros((num_frames, NUM_PARTS), bool)
  fraction = np.zeros((num_frames, NUM_PARTS), np.float32)
  allowed = [np.array([PART_ID[p] for p in LANDMARKS[n]]) for n in LANDMARK_NAMES]
  all_shapes = []
  for t in range(num_frames):
    shapes = frame_shapes(caps, t, scale, offset)
    all_shapes.append(shapes)
    frames[t], parts[t] = _render(shapes, colors, background, size, supersample)
    counts = np.bincount(parts[t].ravel(), minlength=NUM_PARTS + 1)
    for name, shape in shapes.items():
      k = PART_ID[name] - 1
      poses[t, k] = sprites.shape_pose(shape, size)
      count = int(counts[k + 1])
      fraction[t, k] = count / sprites.shape_moments(shape.kind, shape.a, shape.b)[0]
      inside = -0.5 <= shape.cx < size - 0.5 and -0.5 <= shape.cy < size - 0.5
      pose_visible[t, k] = inside and count > 0
    for j in range(num_marks):
      x, y = landmarks[t, j]
      if -0.5 <= x < size - 0.5 and -0.5 <= y < size - 0.5:
        label = parts[t, int(np.floor(y + 0.5)), int(np.floor(x + 0.5))]
        visible[t, j] = label in allowed[j]
  info = {
    "colors": {name: colors[PART_ID[name] - 1].tolist() for name in PART_NAMES[1:]},
    "background": background.tolist(),
    "scale_px_per_unit": round(float(scale), 4),
    "target_fraction": round(float(target), 4),
    "foreground_fraction": round(float(np.count_nonzero(parts) / parts.size), 4),
  }
  return {
    "name_suffix": "figure",
    "frames": frames,
    "parts": parts,
    "landmarks": landmarks,
    "visible": visible,
    "extra": {"poses": poses, "pose_visible": pose_visible, "visible_fraction": fraction},
    "shapes": all_shapes,
    "info": info,
  }


def synthesize_figure2d_dataset(
  root,
  train_videos=DEFAULTS["train_videos"],
  test_videos=DEFAULTS["test_videos"],
  frames=DEFAULTS["frames"],
  size=DEFAULTS["size"],
  seed=0,
  supersample=DEFAULTS["supersample"],
  progress=None,
  contact_sheet=True,
  overwrite=False,
):
  """Generates the figure2d dataset (module docstring) at `root`.

  Arguments, return value and errors as `sprites.synthesize_sprites_dataset`. The defaults
  (200 + 20 videos x 32 frames, 64 px, 4x4 supersampling) took 43 s (160 frames/s) on a 2-core
  machine busy with a training run.
  """
  return sprites.write_dataset(
    root,
    render_figure_video,
    GENERATOR_VERSION,
    PART_NAMES,
    LANDMARK_NAMES,
    train_videos,
    test_videos,
    frames,
    size,
    seed,
    supersample,
    progress=progress,
    contact_sheet=contact_sheet,
    overwrite=overwrite,
    meta_extra={
      "dataset": "figure2d",
      "draw_order": DRAW_ORDER,
      "skeleton": [list(pair) for pair in SKELETON],
      "landmark_parts": {k: list(v) for k, v in LANDMARKS.items()},
    },
  )


def main(argv):
  """absl entry point."""
  del argv
  sprites.run_cli(synthesize_figure2d_dataset)


if __name__ == "__main__":
  from absl import app

  sprites.define_flags(DEFAULTS)
  app.run(main)
