"""The reference's Tai-Chi / VoxCeleb landmark files (DESIGN.md §6-7).

They are pandas DataFrame pickles (``taichi_train_gt.pkl`` ...) with one row per frame and the
columns

- ``file_name``: the video (e.g. ``<ytid>#<start>#<end>.mp4``, the frame folder's name) or a
  frame path (``<video>/<frame>.png``) when there is no ``frame_number`` column;
- ``frame_number``: the frame (an int or a frame file name such as ``0000123.png``);
- ``value``: `[L, 2]` (x, y) pixel coordinates in the 256 x 256 frame (L = 18 for Tai-Chi's
  OpenPose keypoints, 68 for VoxCeleb's face landmarks), ``-1`` for a missing coordinate.

`read_landmark_pickle` turns them into the per-video arrays of our ground-truth side-car:
``landmarks`` float32 `[T, L, 2]` and ``visible`` bool `[T, L]` (False where a coordinate is -1 or
not finite; such coordinates are stored as -1 so the array stays finite).

pandas is not a dependency of copart_tf: it is imported only here, when a pickle is read.
Unpickling runs code from the file: read only files you trust.
"""

import os
import re

import numpy as np

from copart_tf.errors import DataError

MISSING = -1.0
_DIGITS = re.compile(r"(\d+)")
_VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


def _import_pandas(path):
  try:
    import pandas  # lazy: optional dependency
  except ImportError as e:
    raise DataError(
      f"reading the landmark pickle {path} needs pandas, which copart_tf does not install: "
      "pip install pandas"
    ) from e
  return pandas


def _frame_number(value, where):
  """An int frame number from an int or a name such as '0000123.png' (its last digit run)."""
  if isinstance(value, int | np.integer):
    return int(value)
  if isinstance(value, float | np.floating) and float(value).is_integer():
    return int(value)
  text = os.path.splitext(os.path.basename(str(value)))[0]
  runs = _DIGITS.findall(text)
  if not runs:
    raise DataError(f"{where}: cannot read a frame number from {value!r}")
  return int(runs[-1])


def _columns(obj, path):
  """file_name / frame_number / value columns of a DataFrame (or a dict of columns) as lists."""
  if hasattr(obj, "to_dict") and hasattr(obj, "columns"):
    columns = {str(c): list(obj[c]) for c in obj.columns}
  elif isinstance(obj, dict):
    columns = {str(k): list(v) for k, v in obj.items()}
  else:
    raise DataError(f"{path}: expected a pandas DataFrame, got {type(obj).__name__}")
  missing = [c for c in ("file_name", "value") if c not in columns]
  if missing:
    raise DataError(f"{path}: missing columns {missing} (has {sorted(columns)})")
  return columns


def read_landmark_table(path, num_landmarks=None):
  """Reads a landmark pickle as flat per-row arrays (in the file's row order).

  Args:
    path: the ``.pkl`` file.
    num_landmarks: expected L (e.g. 18 or 68); None = take it from the file.

  Returns:
    dict with ``video`` (list of str), ``frame_number`` int64 `[N]`, ``landmarks`` float32
    `[N, L, 2]` (pixels; missing coordinates are -1), ``visible`` bool `[N, L]`.

  Raises:
    DataError: missing file or pandas, unreadable pickle, missing columns, or landmark arrays of
      the wrong shape (names the file and row).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"landmark file {path} does not exist")
  pandas = _import_pandas(path)
  try:
    obj = pandas.read_pickle(path)
  except Exception as e:  # pickle / pandas version errors come in many types
    raise DataError(f"cannot read landmark pickle {path}: {type(e).__name__}: {e}") from e
  columns = _columns(obj, path)
  names = columns["file_name"]
  numbers = columns.get("frame_number")
  videos, frames, values = [], [], []
  for row, (name, value) in enumerate(zip(names, columns["value"], strict=True)):
    where = f"{path} row {row}"
    name = str(name)
    if numbers is not None:
      video, frame = name, _frame_number(numbers[row], where)
    else:  # file_name is '<video>/<frame>.png' (or '<video>#<frame>' style): split it
      head, tail = os.path.split(name)
      video, frame = (head, _frame_number(tail, where)) if head else (name, row)
    try:
      array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
      raise DataError(f"{where}: value is not an [L, 2] array: {e}") from e
    if array.ndim != 2 or array.shape[1] != 2:
      raise DataError(f"{where}: value must be [L, 2], got shape {array.shape}")
    if num_landmarks is None:
      num_landmarks = array.shape[0]
    if array.shape[0] != num_landmarks:
      raise DataError(f"{where}: {array.shape[0]} landmarks, expected {num_landmarks}")
    videos.append(video)
    frames.append(frame)
    values.append(array)
  if not values:
    raise DataError(f"{path}: the landmark table is empty")
  landmarks = np.stack(values).astype(np.float32)
  finite = np.isfinite(landmarks)
  present = finite & (landmarks != MISSING)
  visible = np.all(present, axis=-1)
  landmarks = np.where(finite, landmarks, MISSING).astype(np.float32)
  return {
    "video": videos,
    "frame_number": np.asarray(frames, np.int64),
    "landmarks": landmarks,
    "visible": visible,
  }


def read_landmark_pickle(path, num_landmarks=None):
  """Reads a landmark pickle into per-video arrays sorted by frame number.

  Args:
    path: the ``.pkl`` file.
    num_landmarks: expected L; None = take it from the file.

  Returns:
    dict video name -> dict with ``frame_numbers`` int64 `[T]`, ``landmarks`` float32
    `[T, L, 2]` (pixel (x, y) in the 256 x 256 frame, -1 where missing) and ``visible`` bool
    `[T, L]`. T counts the annotated frames, which need not be all frames of the video.

  Raises:
    DataError: as `read_landmark_table`, or a frame listed twice for one video.
  """
  table = read_landmark_table(path, num_landmarks)
  rows = {}
  for i, video in enumerate(table["video"]):
    rows.setdefault(video, []).append(i)
  out = {}
  for video, idx in rows.items():
    idx = np.asarray(idx)
    numbers = table["frame_number"][idx]
    order = np.argsort(numbers, kind="stable")
    idx, numbers = idx[order], numbers[order]
    dup = np.nonzero(np.diff(numbers) == 0)[0]
    if dup.size:
      raise DataError(f"{path}: frame {numbers[dup[0]]} of video {video!r} is listed twice")
    out[video] = {
      "frame_numbers": numbers,
      "landmarks": table["landmarks"][idx],
      "visible": table["visible"][idx],
    }
  return out


def find_video(landmarks_by_video, name):
  """The entry of `read_landmark_pickle`'s result for a video name of our layout, or None.

  Matches the exact name first, then ignores a video extension on either side (a frame folder
  named ``abc.mp4`` and a file ``abc.mp4`` scanned as ``abc``).
  """
  if name in landmarks_by_video:
    return landmarks_by_video[name]

  def stem(n):
    base, ext = os.path.splitext(n)
    return base if ext.lower() in _VIDEO_EXTENSIONS else n

  wanted = stem(name)
  for key, value in landmarks_by_video.items():
    if stem(key) == wanted:
      return value
  return None
