r"""Synthetic "quality ladder" dataset 1: rigid flat-coloured sprites on a plain background (numpy).

Usage::

  python -m copart_tf.synthetic.sprites --out=data/sprites    # 200 train + 20 test, 32 x 64px

or `synthesize_sprites_dataset(root, ...)`, or ``python -m copart_tf.train
--synthesize_if_missing=sprites`` (through `copart_tf.synthetic.synthesize_dataset`).

Each video shows 1-4 rigid shapes (ellipses, rectangles, capsules), roughly 8-20 px across at 64 px
(sizes scale with the frame), each a distinct saturated colour, on a plain background whose colour
varies per video and is clearly different from every shape. Shape id i is the same kind of shape
with nearly the same hue in every video (``SLOT_KINDS``, ``SLOT_HUES``: sprite_1 a red ellipse,
sprite_2 a chartreuse rectangle, sprite_3 a cyan capsule, sprite_4 a violet ellipse; a video with
n shapes shows ids 1..n), so that "part k" means the same thing across videos, as co-part
segmentation assumes; ``--identity=random`` draws kind and colour per video instead
(interchangeable shapes, generator version 1's data). Every shape moves independently and
smoothly: its centre follows a sum of two sinusoids per axis (periods 24-80 frames) that keeps at
least 70 % of its half-extent inside the frame, it rotates (constant spin plus a wobble) and its
scale breathes by up to +-12 %. Shapes are drawn in a random but fixed z-order and may overlap.

Rendering: RGB is evaluated at ``supersample`` x ``supersample`` sub-pixel positions per pixel and
averaged (anti-aliased edges, exact colours inside); labels are evaluated once per pixel at its
centre (the topmost shape covering the centre, 0 = background). Coordinates follow
`copart_tf.ops.grid` (pixel centres at integers, 0 = centre of the first pixel).

Layout (FOMM + side-car, as `copart_tf.synthetic.dataset`)::

  root/{train,test}/<video>/<frame:05d>.png       video = <index:05d>_sprites<n>
  root/labels/{train,test}/<video>.npz            see below
  root/meta.json                                  generator, names, per-video shapes and colours
  root/contact_sheet.png                          frame | colourised labels, a few videos

Side-car (`copart_tf.data.ground_truth`): ``parts`` = ``links`` = shape id (1..4, independent of
the z-order; videos with fewer shapes never use the higher ids), ``part_names`` = ``link_names`` =
background, sprite_1 .. sprite_4; ``landmarks`` `[T, 4, 2]` = shape centres in pixels, ``visible``
= shape present and centre inside the frame. Extras: ``poses`` float32 `[T, 4, 2, 3]` = [A | t]
mapping canonical to image coordinates in normalised units (t = centre, A = R(theta) diag(sx, sy)
with sx, sy the standard deviations of the shape's area along its own axes, so A A^T is the
covariance of its pixel positions; identity for absent shapes), ``pose_visible`` bool `[T, 4]` =
``visible`` and at least one pixel labelled, ``visible_fraction`` float32 `[T, 4]` = labelled
pixels / the shape's analytic area in pixels (about 1 when unoccluded and inside the frame).
`copart_tf.data.ground_truth.read_poses` reads the poses.

Everything is drawn from ``np.random.default_rng(SeedSequence([seed, split, index]))`` (split 0 =
train, 1 = test), so the same seed gives byte-identical files and videos are independent.
Default size (220 videos x 32 frames at 64 px, 31 MB): about 20 s (see `synthesize_sprites_dataset`).

This module also holds the shape rasteriser and the dataset writer shared with
`copart_tf.synthetic.figure2d`.
"""

import colorsys
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from copart_tf.data.ground_truth import write_ground_truth
from copart_tf.errors import ConfigError, CopartError, DataError
from copart_tf.synthetic import sheet

# The generator's name in meta.json (its module path when it was written, kept across the move:
# benchmarks/pose_oracles.py and configs/sprites.cfg name it). 2: identity="fixed" by default.
GENERATOR_VERSION = "copart_tf.data.sprites/2"
SPLITS = ("train", "test")
MAX_SHAPES = 4
KINDS = ("ellipse", "rectangle", "capsule")
IDENTITIES = ("fixed", "random")
# identity="fixed": what sprite_i is in every video (kind, hue). Why: co-part segmentation learns
# parts that recur across the dataset (the paper's part k is the same body part in every video);
# with a random kind and colour per video the shapes are interchangeable instances, and a model
# that predicts "part k" per channel (the paper's and ours) has nothing to tell part k from part
# j by. Sizes, aspect, saturation, brightness, motion and the background stay random per video.
SLOT_KINDS = ("ellipse", "rectangle", "capsule", "ellipse")
SLOT_HUES = (0.0, 0.25, 0.5, 0.75)  # red, chartreuse, cyan, violet
PART_NAMES = ["background"] + [f"sprite_{i}" for i in range(1, MAX_SHAPES + 1)]
LANDMARK_NAMES = [f"sprite_{i}_centre" for i in range(1, MAX_SHAPES + 1)]
DEFAULTS = {"train_videos": 200, "test_videos": 20, "frames": 32, "size": 64, "supersample": 4}


# ----------------------------------------------------------------------------------------------
# Shapes: geometry, moments, rasterisation.


@dataclasses.dataclass(frozen=True)
class Shape:
  """A rigid shape in pixel coordinates of the frame.

  Attributes:
    kind: "ellipse", "rectangle" or "capsule".
    cx, cy: centre in pixels (0 = centre of the first pixel).
    theta: angle of the shape's own u axis, radians (x right, y down; R(theta) = [[c, -s], [s, c]]).
    a: half-extent along u (ellipse semi-axis, rectangle half-side, capsule half-length including
      the round caps).
    b: half-extent along v (capsule radius; for capsules b <= a).
  """

  kind: str
  cx: float
  cy: float
  theta: float
  a: float
  b: float


def shape_moments(kind, a, b):
  """Analytic (area, variance along u, variance along v) of a shape's area, pixel units."""
  if kind == "ellipse":
    return np.pi * a * b, a * a / 4.0, b * b / 4.0
  if kind == "rectangle":
    return 4.0 * a * b, a * a / 3.0, b * b / 3.0
  if kind == "capsule":
    r, half = b, max(a - b, 0.0)  # radius, half-length of the core segment
    area = 4.0 * half * r + np.pi * r * r
    # Rectangle 2 half x 2 r plus two half discs at u = +-half.
    i_uu = (
      4.0 * r * half**3 / 3.0
      + np.pi * half**2 * r**2
      + 8.0 * half * r**3 / 3.0
      + np.pi * r**4 / 4.0
    )
    i_vv = 4.0 * half * r**3 / 3.0 + np.pi * r**4 / 4.0
    return area, i_uu / area, i_vv / area
  raise ValueError(f"unknown shape kind {kind!r}")


def shape_inside(shape, xs, ys):
  """Boolean mask `[len(ys), len(xs)]`: which points (xs[j], ys[i]) the shape covers."""
  dx = np.asarray(xs, np.float64)[None, :] - shape.cx
  dy = np.asarray(ys, np.float64)[:, None] - shape.cy
  c, s = np.cos(shape.theta), np.sin(shape.theta)
  u = c * dx + s * dy
  v = -s * dx + c * dy
  a, b = shape.a, shape.b
  if shape.kind == "ellipse":
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0
  if shape.kind == "rectangle":
    return (np.abs(u) <= a) & (np.abs(v) <= b)
  if shape.kind == "capsule":
    half = max(a - b, 0.0)
    du = u - np.clip(u, -half, half)
    return du * du + v * v <= b * b
  raise ValueError(f"unknown shape kind {shape.kind!r}")


def shape_radius(shape):
  """Radius of a disc around the centre that contains the shape."""
  if shape.kind == "rectangle":
    return float(np.hypot(shape.a, shape.b))
  return float(max(shape.a, shape.b))


def shape_pose(shape, size):
  """`[2, 3]` [A | t] in normalised coordinates (`copart_tf.ops.grid`) of a shape in a size^2 frame.

  t = the centre, A = R(theta) diag(sx, sy) with sx, sy the standard deviations of the shape's
  area along its own axes, so that A A^T is the covariance of its points.
  """
  _, var_u, var_v = shape_moments(shape.kind, shape.a, shape.b)
  scale = 2.0 / size
  c, s = np.cos(shape.theta), np.sin(shape.theta)
  sx, sy = np.sqrt(var_u) * scale, np.sqrt(var_v) * scale
  return np.array(
    [
      [c * sx, -s * sy, (2.0 * shape.cx + 1.0) / size - 1.0],
      [s * sx, c * sy, (2.0 * shape.cy + 1.0) / size - 1.0],
    ],
    np.float64,
  )


def _coverage(shape, size, factor):
  """(mask, row slice, col slice) of a shape on the factor x supersampled grid, cropped to it."""
  big = size * factor
  r = shape_radius(shape) + 1.0

  def span(c):
    lo = int(np.floor((c - r + 0.5) * factor - 0.5))
    hi = int(np.ceil((c + r + 0.5) * factor - 0.5)) + 1
    return max(lo, 0), min(hi, big)

  c0, c1 = span(shape.cx)
  r0, r1 = span(shape.cy)
  if c0 >= c1 or r0 >= r1:
    return None, slice(0, 0), slice(0, 0)
  xs = (np.arange(c0, c1) + 0.5) / factor - 0.5
  ys = (np.arange(r0, r1) + 0.5) / factor - 0.5
  return shape_inside(shape, xs, ys), slice(r0, r1), slice(c0, c1)


def render_shapes(shapes, colors, ids, background, size, supersample=4):
  """Paints shapes back to front.

  Args:
    shapes: list of `Shape`, back to front.
    colors: `[n, 3]` uint8 colour of each shape.
    ids: n label values (1..255) of the shapes.
    background: `[3]` uint8 background colour.
    size: frame size S (square).
    supersample: sub-pixels per pixel along each axis for the RGB (1 = aliased).

  Returns:
    (rgb uint8 `[S, S, 3]` = average of the supersampled colours, labels uint8 `[S, S]` = id of
    the topmost shape covering each pixel centre, 0 = background).
  """
  f = int(supersample)
  canvas = np.empty((size * f, size * f, 3), np.uint8)
  canvas[:] = np.asarray(background, np.uint8)
  labels = np.zeros((size, size), np.uint8)
  for shape, color, ident in zip(shapes, colors, ids, strict=True):
    mask, rows, cols = _coverage(shape, size, f)
    if mask is not None:
      canvas[rows, cols][mask] = np.asarray(color, np.uint8)
    mask, rows, cols = _coverage(shape, size, 1)
    if mask is not None:
      labels[rows, cols][mask] = ident
  # Box filter in two passes (rows, then columns): much faster than mean over axes (1, 3).
  rgb = canvas.reshape(size, f, size * f * 3).sum(axis=1, dtype=np.uint16)
  rgb = rgb.reshape(size, size, f, 3).sum(axis=2, dtype=np.uint16)
  return np.round(rgb / float(f * f)).astype(np.uint8), labels


def label_moments(labels, ident):
  """(pixel count, centroid (x, y), covariance `[2, 2]`) of the pixels labelled `ident`, pixels."""
  ys, xs = np.nonzero(labels == ident)
  if len(xs) == 0:
    return 0, None, None
  pts = np.stack([xs, ys], axis=1).astype(np.float64)
  mean = pts.mean(axis=0)
  d = pts - mean
  return len(xs), mean, d.T @ d / len(xs)


# ----------------------------------------------------------------------------------------------
# Colours and smooth signals.


def sample_colors(rng, num, min_distance=110.0, background_min_distance=130.0, hues=None):
  """`num` distinct saturated colours and a plain, less saturated background colour far from them.

  Hues are spread evenly from a random offset (shuffled) so they stay apart, or, when `hues` is
  given, jittered by at most +-0.03 around those; saturation and value vary a little; pairs
  closer than `min_distance` (RGB, 0-255) are resampled. The background has low saturation and
  any brightness, at least `background_min_distance` from every colour.

  Returns:
    (colors uint8 `[num, 3]`, background uint8 `[3]`).
  """
  for _ in range(1000):
    if hues is None:
      drawn = (rng.uniform() + np.arange(num) / num + rng.uniform(-0.2, 0.2, num) / num) % 1.0
      drawn = drawn[rng.permutation(num)]
    else:
      drawn = (np.asarray(hues, np.float64)[:num] + rng.uniform(-0.03, 0.03, num)) % 1.0
    sats = rng.uniform(0.7, 1.0, num)
    vals = rng.uniform(0.7, 1.0, num)
    colors = np.array(
      [colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(drawn, sats, vals, strict=True)]
    )
    colors = np.round(colors * 255.0)
    d = np.linalg.norm(colors[:, None] - colors[None], axis=-1) + np.eye(num) * 1e9
    if d.min() >= min_distance:
      break
  else:  # pragma: no cover - the hue spacing makes this practically impossible
    raise RuntimeError("could not sample distinct colours")
  for _ in range(1000):
    bg = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.1, 0.95))
    bg = np.round(np.array(bg) * 255.0)
    if np.linalg.norm(colors - bg, axis=-1).min() >= background_min_distance:
      break
  else:  # pragma: no cover
    bg = np.zeros(3) if np.mean(colors) > 128 else np.full(3, 255.0)
  return colors.astype(np.uint8), bg.astype(np.uint8)


def smooth_signal(rng, num_frames, periods=(24.0, 80.0), terms=2):
  """`[T]` sum of `terms` random sinusoids (periods in frames), scaled to lie in [-1, 1]."""
  t = np.arange(num_frames, dtype=np.float64)
  amps = rng.uniform(0.3, 1.0, terms)
  omegas = 2.0 * np.pi / rng.uniform(periods[0], periods[1], terms)
  phases = rng.uniform(0.0, 2.0 * np.pi, terms)
  out = (amps[:, None] * np.sin(omegas[:, None] * t[None] + phases[:, None])).sum(axis=0)
  return out / amps.sum()


# ----------------------------------------------------------------------------------------------
# One sprites video.


def _pixel_to_normalized(points, size):
  return (2.0 * np.asarray(points, np.float64) + 1.0) / size - 1.0


def render_sprites_video(
  rng, num_frames, size=64, supersample=4, max_shapes=MAX_SHAPES, identity="fixed"
):
  """Samples and renders one sprites video (1 to `max_shapes` shapes, ids 1..n).

  `identity`: "fixed" = shape id i always has kind ``SLOT_KINDS[i-1]`` and a hue within 0.03 of
  ``SLOT_HUES[i-1]``; "random" = kind and colour drawn per video (generator version 1's data).

  Returns:
    dict with ``frames`` uint8 `[T, S, S, 3]`, ``parts`` uint8 `[T, S, S]`, ``landmarks`` float32
    `[T, 4, 2]`, ``visible`` bool `[T, 4]`, ``extra`` (``poses``, ``pose_visible``,
    ``visible_fraction``), ``shapes`` (per frame, the `Shape` of each present id) and ``info``.
  """
  unit = size / 64.0
  if identity not in IDENTITIES:
    raise ConfigError(f"--identity={identity!r}: must be one of {', '.join(IDENTITIES)}")
  fixed = identity == "fixed"
  n = int(rng.integers(1, max_shapes + 1))
  colors, background = sample_colors(rng, n, hues=SLOT_HUES if fixed else None)
  z_order = [int(i) for i in rng.permutation(n)]  # z_order[k] = index of the k-th shape drawn
  kinds, sizes, tracks = [], [], []
  for i in range(n):
    kind = SLOT_KINDS[i] if fixed else KINDS[int(rng.integers(len(KINDS)))]
    a = rng.uniform(5.0, 10.0) * unit
    aspect = rng.uniform(0.3, 0.65) if kind == "capsule" else rng.uniform(0.45, 1.0)
    b = max(a * aspect, 2.5 * unit)
    if kind == "capsule":
      b = min(b, 0.7 * a)
    breathe = rng.uniform(0.0, 0.12)
    scale = np.exp(breathe * smooth_signal(rng, num_frames, terms=1))
    margin = 0.7 * a * np.exp(breathe)
    lo, hi = margin - 0.5, size - 0.5 - margin
    centre = []
    for _axis in range(2):
      mid = rng.uniform(lo, hi)
      half = min(mid - lo, hi - mid) * rng.uniform(0.5, 1.0)
      centre.append(mid + half * smooth_signal(rng, num_frames))
    spin = rng.uniform(-0.08, 0.08)
    wobble = rng.uniform(0.0, 0.4)
    theta = (
      rng.uniform(-np.pi, np.pi)
      + spin * np.arange(num_frames)
      + wobble * smooth_signal(rng, num_frames, terms=1)
    )
    kinds.append(kind)
    sizes.append((float(a), float(b)))
    tracks.append((centre[0], centre[1], theta, scale))

  frames = np.zeros((num_frames, size, size, 3), np.uint8)
  parts = np.zeros((num_frames, size, size), np.uint8)
  landmarks = np.zeros((num_frames, MAX_SHAPES, 2), np.float32)
  visible = np.zeros((num_frames, MAX_SHAPES), bool)
  poses = np.tile(np.eye(2, 3, dtype=np.float32), (num_frames, MAX_SHAPES, 1, 1))
  pose_visible = np.zeros((num_frames, MAX_SHAPES), bool)
  fraction = np.zeros((num_frames, MAX_SHAPES), np.float32)
  all_shapes = []
  for t in range(num_frames):
    shapes = []
    for i in range(n):
      cx, cy, theta, scale = tracks[i]
      a, b = sizes[i]
      shapes.append(
        Shape(kinds[i], float(cx[t]), float(cy[t]), float(theta[t]), a * scale[t], b * scale[t])
      )
    all_shapes.append(shapes)
    frames[t], parts[t] = render_shapes(
      [shapes[i] for i in z_order],
      colors[z_order],
      [i + 1 for i in z_order],
      background,
      size,
      supersample,
    )
    counts = np.bincount(parts[t].ravel(), minlength=MAX_SHAPES + 1)
    for i, shape in enumerate(shapes):
      landmarks[t, i] = (shape.cx, shape.cy)
      inside = -0.5 <= shape.cx < size - 0.5 and -0.5 <= shape.cy < size - 0.5
      visible[t, i] = inside
      poses[t, i] = shape_pose(shape, size)
      count = int(counts[i + 1])
      fraction[t, i] = count / shape_moments(shape.kind, shape.a, shape.b)[0]
      pose_visible[t, i] = inside and count > 0
  info = {
    "num_shapes": n,
    "kinds": kinds,
    "half_extents_px": [[round(a, 4), round(b, 4)] for a, b in sizes],
    "colors": colors.tolist(),
    "background": background.tolist(),
    "z_order_ids": [i + 1 for i in z_order],
  }
  return {
    "name_suffix": f"sprites{n}",
    "frames": frames,
    "parts": parts,
    "landmarks": landmarks,
    "visible": visible,
    "extra": {"poses": poses, "pose_visible": pose_visible, "visible_fraction": fraction},
    "shapes": all_shapes,
    "info": info,
  }


# ----------------------------------------------------------------------------------------------
# Dataset writer shared with figure2d.


def video_rng(seed, split_index, video_index):
  """The RNG of one video (as `copart_tf.synthetic.dataset`)."""
  return np.random.default_rng(np.random.SeedSequence([seed, split_index, video_index]))


def check_args(train_videos, test_videos, frames, size, seed, supersample):
  """Raises ConfigError naming the flag of the first out-of-range argument."""
  checks = [
    ("--train_videos", train_videos, train_videos >= 0),
    ("--test_videos", test_videos, test_videos >= 0),
    ("--frames", frames, frames >= 1),
    ("--size", size, size >= 16),
    ("--seed", seed, seed >= 0),
    ("--supersample", supersample, 1 <= supersample <= 8),
  ]
  for flag, value, ok in checks:
    if not ok:
      raise ConfigError(f"{flag}={value} is out of range")
  if train_videos + test_videos < 1:
    raise ConfigError("--train_videos + --test_videos must be at least 1")


def contact_sheet_row(video, frames_shown=4, scale=None):
  """One row: for `frames_shown` evenly spaced frames, frame | colourised labels."""
  size = video["frames"].shape[1]
  scale = scale or max(1, 128 // size)
  num = len(video["frames"])
  picks = sorted({int(round(x)) for x in np.linspace(0, num - 1, frames_shown)})
  tiles = []
  block = np.ones((scale, scale, 1), np.uint8)
  for t in picks:
    tiles.append(np.kron(video["frames"][t], block))
    tiles.append(np.kron(sheet.colorize_parts(video["parts"][t]), block))
  while len(tiles) < 2 * frames_shown:
    tiles.append(np.zeros_like(tiles[0]))
  return np.concatenate(tiles, axis=1)


def _save_png(path, image):
  Image.fromarray(image).save(path, format="PNG", compress_level=6)


def publish_dataset(tmp, out_dir):
  """Moves a finished dataset folder `tmp` to `out_dir` (a sibling), replacing what was there.

  The old folder is renamed away before the new one is renamed in, so `out_dir` is never half
  written: a reader sees the old dataset or the new one.
  """
  if os.path.exists(out_dir):
    parent = os.path.dirname(os.path.abspath(out_dir))
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
    os.rename(out_dir, os.path.join(old, "d"))
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.rename(tmp, out_dir)


def write_dataset(
  out_dir,
  render_fn,
  generator,
  part_names,
  landmark_names,
  train_videos,
  test_videos,
  frames,
  size,
  seed,
  supersample,
  progress=None,
  contact_sheet=True,
  overwrite=False,
  meta_extra=None,
):
  """Generates a dataset video by video into a temporary sibling folder, then renames it.

  Args:
    out_dir: dataset root.
    render_fn: callable(rng, frames, size, supersample) -> video dict (see
      `render_sprites_video`: name_suffix, frames, parts, landmarks, visible, extra, info).
    generator: generator name and version for meta.json.
    part_names: K+1 part names (also the link names: links = parts).
    landmark_names: L landmark names.
    train_videos, test_videos, frames, size, seed, supersample: see `synthesize_sprites_dataset`.
    progress: optional callable(done_frames, total_frames), called after every frame written.
    contact_sheet: also write ``contact_sheet.png``.
    overwrite: replace an existing non-empty `out_dir`.
    meta_extra: dict merged into meta.json.

  Returns:
    summary dict (out_dir, videos, frames, seconds, frames_per_second, names).
  """
  check_args(train_videos, test_videos, frames, size, seed, supersample)
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
  done = 0
  start = time.perf_counter()
  try:
    videos_meta = {}
    sheet_rows = []
    for split_index, split in enumerate(SPLITS):
      videos_meta[split] = []
      for i in range(counts[split]):
        video = render_fn(video_rng(seed, split_index, i), int(frames), int(size), int(supersample))
        name = f"{i:05d}_{video['name_suffix']}"
        frame_dir = os.path.join(tmp, split, name)
        os.makedirs(frame_dir)
        for t in range(int(frames)):
          _save_png(os.path.join(frame_dir, f"{t:05d}.png"), video["frames"][t])
          done += 1
          if progress is not None:
            progress(done, total)
        write_ground_truth(
          os.path.join(tmp, "labels", split, name + ".npz"),
          parts=video["parts"],
          links=video["parts"],
          landmarks=video["landmarks"],
          visible=video["visible"],
          part_names=part_names,
          link_names=part_names,
          landmark_names=landmark_names,
          extra=video["extra"],
        )
        videos_meta[split].append({"name": name, **video["info"]})
        if contact_sheet and len(sheet_rows) < (5 if split == "train" else 8):
          sheet_rows.append(contact_sheet_row(video))
    meta = {
      "generator": generator,
      "num_parts": len(part_names) - 1,
      "part_names": list(part_names),
      "link_names": list(part_names),
      "landmark_names": list(landmark_names),
      "size": int(size),
      "frames_per_video": int(frames),
      "seed": int(seed),
      "supersample": int(supersample),
      "counts": counts,
      **(meta_extra or {}),
      "videos": videos_meta,
    }
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
      f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if contact_sheet and sheet_rows:
      _save_png(os.path.join(tmp, "contact_sheet.png"), np.concatenate(sheet_rows, axis=0))
    publish_dataset(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  seconds = time.perf_counter() - start
  return {
    "out_dir": out_dir,
    "generator": generator,
    "num_parts": len(part_names) - 1,
    "part_names": list(part_names),
    "landmark_names": list(landmark_names),
    "videos": counts,
    "frames": total,
    "seconds": round(seconds, 3),
    "frames_per_second": round(total / seconds, 2) if seconds > 0 else None,
  }


def synthesize_sprites_dataset(
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
  max_shapes=MAX_SHAPES,
  identity="fixed",
):
  """Generates the sprites dataset (module docstring) at `root`.

  The defaults (200 + 20 videos x 32 frames, 64 px, 4x4 supersampling) took 20 s (350 frames/s)
  on a 2-core machine busy with a training run.

  Args:
    root: dataset root to create (must not exist or be empty, unless `overwrite`).
    train_videos: number of training videos.
    test_videos: number of test videos.
    frames: frames per video T.
    size: frame size S (square); shape sizes scale with S / 64.
    seed: non-negative integer; the same seed gives byte-identical files.
    supersample: RGB sub-pixels per pixel along each axis (1 = aliased edges).
    progress: optional callable(done_frames, total_frames), called after every frame written.
    contact_sheet: also write ``root/contact_sheet.png``.
    overwrite: replace an existing non-empty `root`.
    max_shapes: each video draws 1 to `max_shapes` shapes (<= 4); 1 gives the single-sprite
      data of the learning test.
    identity: "fixed" (sprite_i has the same kind and hue in every video) or "random" (kind and
      colour per video: interchangeable shapes, the data of generator version 1).

  Returns:
    summary dict (``out_dir``, ``videos``, ``frames``, ``seconds``, ...).

  Raises:
    ConfigError: an argument out of range (names the flag).
    DataError: `root` exists and is not empty (without `overwrite`).
  """
  if not 1 <= max_shapes <= MAX_SHAPES:
    raise ConfigError(f"--max_shapes={max_shapes}: must be in 1..{MAX_SHAPES}")

  def render(rng, num_frames, size, supersample):
    return render_sprites_video(
      rng, num_frames, size, supersample, max_shapes=max_shapes, identity=identity
    )

  return write_dataset(
    root,
    render,
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
      "dataset": "sprites",
      "max_shapes": max_shapes,
      "identity": identity,
      "kinds": list(SLOT_KINDS if identity == "fixed" else KINDS),
    },
  )


# ----------------------------------------------------------------------------------------------
# CLI (shared with figure2d).


def define_flags(defaults):
  """Defines the generator flags (--out, sizes, --seed, ...) with the given defaults."""
  from absl import flags

  flags.DEFINE_string("out", None, "Output dataset root (must not exist or be empty).")
  flags.DEFINE_integer("train_videos", defaults["train_videos"], "Number of training videos.")
  flags.DEFINE_integer("test_videos", defaults["test_videos"], "Number of test videos.")
  flags.DEFINE_integer("frames", defaults["frames"], "Frames per video.")
  flags.DEFINE_integer("size", defaults["size"], "Frame size in pixels (square).")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives identical files.")
  flags.DEFINE_integer("supersample", defaults["supersample"], "Anti-aliasing sub-pixels per axis.")
  flags.DEFINE_boolean("contact_sheet", True, "Write root/contact_sheet.png.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing --out folder.")


def run_cli(synthesize_fn, **extra_kwargs):
  """Runs `synthesize_fn` with the flags of `define_flags` (and `extra_kwargs`); prints JSON."""
  from absl import flags

  FLAGS = flags.FLAGS
  if not FLAGS.out:
    print("error: --out is required", file=sys.stderr)
    sys.exit(2)
  try:
    summary = synthesize_fn(
      FLAGS.out,
      train_videos=FLAGS.train_videos,
      test_videos=FLAGS.test_videos,
      frames=FLAGS.frames,
      size=FLAGS.size,
      seed=FLAGS.seed,
      supersample=FLAGS.supersample,
      contact_sheet=FLAGS.contact_sheet,
      overwrite=FLAGS.overwrite,
      **extra_kwargs,
    )
  except CopartError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(summary, indent=2))


def main(argv):
  """absl entry point."""
  del argv
  from absl import flags

  run_cli(
    synthesize_sprites_dataset,
    max_shapes=flags.FLAGS.max_shapes,
    identity=flags.FLAGS.identity,
  )


if __name__ == "__main__":
  from absl import app, flags

  define_flags(DEFAULTS)
  flags.DEFINE_integer("max_shapes", MAX_SHAPES, "Each video draws 1 to this many shapes (1..4).")
  flags.DEFINE_enum(
    "identity",
    "fixed",
    list(IDENTITIES),
    "fixed: sprite_i has the same kind and hue in every video; random: per video.",
  )
  app.run(main)
