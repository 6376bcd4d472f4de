"""Part tracks: every part's centre, rotation and scale per frame, streamed to JSON and CSV.

Conventions (the same as the rest of copart_tf):

- Pixels: (x, y), x to the right, y down, 0 = the centre of the first pixel, in the frame as
  given (input pixels, before any downscaling by the application).
- Rotation and scale come from the part's pose T_k = [A_k | t_k] in the model's normalised frame,
  decomposed as A_k = R(theta) [[sx, m], [0, sy]] (`copart_tf.ops.affine.to_pose`; m, the shear,
  is 0 for the model's poses). ``rotation_deg`` = theta in degrees, (-180, 180]; because y points
  down, a positive angle turns the part's x axis clockwise on screen. ``scale`` = (sx, sy) in
  model units: 1 = the part's canonical frame spans the whole image (scales start at 1 and stay in
  (0.53, 10)).
- ``affines`` [K, 2, 3] map canonical-frame coordinates to input pixels: p = A c + t.
- ``area``: fraction of the frame's pixels whose hard label is the part (0 = not visible).

Files (both written as frames arrive, so memory does not grow with the video):

``tracks.json``::

  {"format": "copart_tf.tracks/1", "model": ..., "image_size": S, "num_parts": K,
   "part_names": [K+1 names, [0] = background], "palette": [[r, g, b] x K+1], "input": ...,
   "fps": f, "frame_size": [H, W], "output_frame_size": [h, w], ...,
   "frames": [{"frame": i, "time": i / fps, "foreground_fraction": f,
               "centers": [[x, y] x K], "rotation_deg": [K], "scale": [[sx, sy] x K],
               "area": [K], "affines": [[[a, b, tx], [c, d, ty]] x K]}, ...],
   "num_frames": N}

  Per-part lists hold the foreground parts 1..K in order (entry j is part j + 1, named
  ``part_names[j + 1]``). The file is written to ``tracks.json.partial`` and renamed when complete.

``tracks.csv``: a header, then one row per frame and part (N * K rows)::

  frame,time,part,name,x,y,rotation_deg,scale_x,scale_y,area
"""

import csv
import json
import os

import numpy as np

FORMAT = "copart_tf.tracks/1"
CSV_COLUMNS = (
  "frame",
  "time",
  "part",
  "name",
  "x",
  "y",
  "rotation_deg",
  "scale_x",
  "scale_y",
  "area",
)
JSON_NAME = "tracks.json"
CSV_NAME = "tracks.csv"


def pixel_to_normalized_affines(affines, height, width):
  """Poses in pixels -> poses in normalised coordinates (inverse of `poses_to_pixels`).

  Args:
    affines: `[..., K, 2, 3]` canonical -> pixels of an H x W frame.
    height: H.
    width: W.

  Returns:
    `[..., K, 2, 3]` float32, canonical -> normalised image coordinates.
  """
  affines = np.asarray(affines, np.float64)
  inv_scale = np.array([2.0 / width, 2.0 / height])
  linear = affines[..., :2] * inv_scale[:, None]
  shift = (affines[..., 2] + 0.5) * inv_scale - 1.0
  return np.concatenate([linear, shift[..., None]], axis=-1).astype(np.float32)


def normalized_to_pixel_affines(affines, height, width):
  """Poses in normalised coordinates -> poses in pixels of an H x W frame.

  Args:
    affines: `[..., K, 2, 3]` canonical -> normalised image coordinates.
    height: H.
    width: W.

  Returns:
    `[..., K, 2, 3]` float32, canonical -> pixels (x, y; 0 = centre of the first pixel).
  """
  affines = np.asarray(affines, np.float64)
  scale = np.array([width / 2.0, height / 2.0])
  linear = affines[..., :2] * scale[:, None]
  shift = affines[..., 2] * scale + scale - 0.5
  return np.concatenate([linear, shift[..., None]], axis=-1).astype(np.float32)


def pose_parameters(normalized_affines):
  """Rotation (degrees) and scale of poses (NumPy version of `ops.affine.to_pose`).

  Args:
    normalized_affines: `[..., 2, 3]` canonical -> normalised image coordinates.

  Returns:
    (rotation_deg `[...]` in (-180, 180], scale `[..., 2]` (sx, sy)).
  """
  a = np.asarray(normalized_affines, np.float64)
  a00, a10, a01, a11 = a[..., 0, 0], a[..., 1, 0], a[..., 0, 1], a[..., 1, 1]
  theta = np.arctan2(a10, a00)
  sx = np.sqrt(a00 * a00 + a10 * a10)
  sy = (a00 * a11 - a01 * a10) / np.maximum(sx, 1e-12)
  return np.degrees(theta), np.stack([sx, sy], axis=-1)


def part_areas(labels, num_parts):
  """Fraction of pixels of each foreground part.

  Args:
    labels: int `[N, H, W]`, 0 = background.
    num_parts: K.

  Returns:
    float `[N, K]`.
  """
  labels = np.asarray(labels)
  n = labels.shape[0]
  flat = labels.reshape(n, -1).astype(np.int64)
  offsets = (np.arange(n) * (num_parts + 1))[:, None]
  counts = np.bincount((flat + offsets).ravel(), minlength=n * (num_parts + 1))
  counts = counts.reshape(n, num_parts + 1)[:, 1:]
  return counts / max(flat.shape[1], 1)


def _rounded(array, digits):
  return np.round(np.asarray(array, np.float64), digits).tolist()


class TrackWriter:
  """Writes ``tracks.json`` and ``tracks.csv`` frame by frame.

  Args:
    output_dir: folder of the two files.
    header: JSON-able dict written at the top of tracks.json (model, sizes, part names, ...).
    part_names: K+1 names, [0] = background.
  """

  def __init__(self, output_dir, header, part_names):
    self.part_names = list(part_names)
    self.num_parts = len(self.part_names) - 1
    self.json_path = os.path.join(output_dir, JSON_NAME)
    self.csv_path = os.path.join(output_dir, CSV_NAME)
    self._json_tmp = self.json_path + ".partial"
    self._json = open(self._json_tmp, "w")
    head = {"format": FORMAT, **header, "part_names": self.part_names}
    self._json.write("{\n")
    for key, value in head.items():
      self._json.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
    self._json.write('  "frames": [')
    self._csv_file = open(self.csv_path, "w", newline="")
    self._csv = csv.writer(self._csv_file)
    self._csv.writerow(CSV_COLUMNS)
    self.num_frames = 0

  def add(self, index, time, centers, affines, normalized_affines, area, foreground_fraction):
    """Appends one frame.

    Args:
      index: frame index.
      time: seconds from the start.
      centers: `[K, 2]` pixels (x, y).
      affines: `[K, 2, 3]` canonical -> pixels.
      normalized_affines: `[K, 2, 3]` canonical -> normalised coordinates (rotation, scale).
      area: `[K]` fraction of the frame per part.
      foreground_fraction: fraction of non-background pixels.
    """
    rotation, scale = pose_parameters(normalized_affines)
    record = {
      "frame": int(index),
      "time": round(float(time), 4),
      "foreground_fraction": round(float(foreground_fraction), 5),
      "centers": _rounded(centers, 3),
      "rotation_deg": _rounded(rotation, 3),
      "scale": _rounded(scale, 5),
      "area": _rounded(area, 5),
      "affines": _rounded(affines, 4),
    }
    self._json.write(("\n    " if self.num_frames == 0 else ",\n    ") + json.dumps(record))
    for k in range(self.num_parts):
      self._csv.writerow(
        [
          record["frame"],
          record["time"],
          k + 1,
          self.part_names[k + 1],
          record["centers"][k][0],
          record["centers"][k][1],
          record["rotation_deg"][k],
          record["scale"][k][0],
          record["scale"][k][1],
          record["area"][k],
        ]
      )
    self.num_frames += 1

  def close(self, footer=None):
    """Finishes both files; `footer` (dict) is written after the frames in tracks.json."""
    footer = {"num_frames": self.num_frames, **(footer or {})}
    self._json.write("\n  ]")
    for key, value in footer.items():
      self._json.write(f",\n  {json.dumps(key)}: {json.dumps(value)}")
    self._json.write("\n}\n")
    self._json.close()
    os.replace(self._json_tmp, self.json_path)
    self._csv_file.close()

  def abort(self):
    """Closes the files after a failure (tracks.json stays absent, the CSV keeps its rows)."""
    for f in (self._json, self._csv_file):
      if not f.closed:
        f.close()
    if os.path.exists(self._json_tmp):
      os.remove(self._json_tmp)
