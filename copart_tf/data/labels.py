"""Where the ground truth of a video comes from: the layouts users bring (README, "Bringing your
own labels").

For the video ``<name>`` of split ``<split>``, under ``root/labels/``:

1. ``<split>/<name>.npz``: our side-car (`copart_tf.data.ground_truth`); only ``parts`` or
   ``landmarks`` is needed.
2. ``<split>/<name>/<frame>.png``: one label PNG per frame (0 = background, 1.. = parts; a mask
   holding only 0 and 255 is a binary foreground mask, 255 -> 1), matched to the video's frames by
   file name, else by the last number in the name (= the frame index for video files and strips).
   Frames without a PNG have no part labels.
3. ``<split>/<name>.png``: the label PNG of a one-frame video (the reference's evaluation images:
   ``test/<image>.png`` with a mask of the same name).
4. The reference's Tai-Chi / VoxCeleb landmark pickle (`copart_tf.data.landmark_pickles`) for the
   whole split: ``<split>_gt.pkl``, ``<anything>_<split>_gt.pkl`` (``taichi_test_gt.pkl``) or
   ``<split>.pkl``. Frames without a row have no landmarks.

Parts come from 1, else 2 or 3; landmarks from 1, else 4. Frames with neither are not evaluated.
What is missing is logged once per split and piece (`log_missing`): one line naming it and the
metric that skips it.
"""

import dataclasses
import glob
import logging
import os
import re
import threading

import numpy as np

from copart_tf.data import ground_truth as gt_lib
from copart_tf.data import landmark_pickles
from copart_tf.errors import DataError

logger = logging.getLogger(__name__)

_DIGITS = re.compile(r"(\d+)")
_LABEL_EXTENSIONS = (".png",)
_logged = set()
_logged_lock = threading.Lock()


def _log_once(level, message):
  with _logged_lock:
    if message in _logged:
      return
    _logged.add(message)
  logger.log(level, message)


def read_label_png(path):
  """One frame's part labels from a PNG.

  Grey (``L``), palette (``P``, the palette index is the label), 1-bit and 16-bit PNGs hold one
  label per pixel; RGB(A) PNGs are accepted when their channels are equal. A mask holding only 0
  and 255 is a binary foreground mask (255 -> part 1).

  Args:
    path: the PNG.

  Returns:
    uint8 `[H, W]`, 0 = background.

  Raises:
    DataError: unreadable file, colour-coded labels, or labels above 255 (names `path`).
  """
  from PIL import Image

  try:
    with Image.open(path) as image:
      image.load()
      mode = image.mode
      array = np.asarray(image)
  except Exception as e:  # PIL raises many types for corrupt files
    raise DataError(f"cannot read label PNG {path}: {type(e).__name__}: {e}") from e
  if array.ndim == 3:
    if not all(
      np.array_equal(array[..., 0], array[..., c]) for c in range(1, min(3, array.shape[-1]))
    ):
      raise DataError(
        f"{path}: a colour ({mode}) label PNG: store one label per pixel (grey 'L' or palette 'P' "
        "PNG, 0 = background, 1..K = parts)"
      )
    array = array[..., 0]
  if array.dtype == bool:
    array = array.astype(np.uint8)
  if array.size and (int(array.min()) < 0 or int(array.max()) > 255):
    raise DataError(f"{path}: labels must be 0..255, got range [{array.min()}, {array.max()}]")
  array = array.astype(np.uint8)
  values = np.unique(array)
  if values.size and values[-1] == 255 and np.all(np.isin(values, (0, 255))):
    array = (array > 0).astype(np.uint8)
  return array


def split_landmark_pickle(data_dir, split):
  """The split's landmark pickle under ``root/labels`` (module docstring), or None.

  Raises:
    DataError: more than one candidate file.
  """
  folder = os.path.join(os.fspath(data_dir), "labels")
  found = set(glob.glob(os.path.join(glob.escape(folder), f"*_{split}_gt.pkl")))
  for name in (f"{split}_gt.pkl", f"{split}.pkl"):
    if os.path.isfile(os.path.join(folder, name)):
      found.add(os.path.join(folder, name))
  if len(found) > 1:
    raise DataError(
      f"several landmark pickles for split {split!r}: {sorted(found)}; keep one per split"
    )
  return found.pop() if found else None


def _frame_numbers(entry):
  """(frame file stem -> index, number in the name -> index or None when numbers are indices)."""
  if entry.kind != "frames":
    return {}, None
  stems, numbers, repeated = {}, {}, set()
  for i, path in enumerate(entry.frame_files):
    stem = os.path.splitext(os.path.basename(path))[0]
    stems[stem] = i
    runs = _DIGITS.findall(stem)
    if runs:
      n = int(runs[-1])
      if n in numbers:
        repeated.add(n)
      numbers[n] = i
  for n in repeated:
    del numbers[n]
  return stems, numbers


def _index_of_number(number, numbers):
  return number if numbers is None else numbers.get(number)


def _mask_files(folder, entry):
  """frame index -> label PNG of a per-frame label folder."""
  stems, numbers = _frame_numbers(entry)
  out = {}
  for name in sorted(os.listdir(folder)):
    if name.startswith(".") or os.path.splitext(name)[1].lower() not in _LABEL_EXTENSIONS:
      continue
    path = os.path.join(folder, name)
    stem = os.path.splitext(name)[0]
    index = stems.get(stem)
    if index is None:
      runs = _DIGITS.findall(stem)
      index = _index_of_number(int(runs[-1]), numbers) if runs else None
    if index is None:
      raise DataError(
        f"{path}: matches no frame of {entry.path} (label PNGs are matched to frames by file name "
        "or by the frame number in the name)"
      )
    if index in out:
      raise DataError(f"{path} and {out[index]} are both labels of frame {index} of {entry.path}")
    out[index] = path
  return out


@dataclasses.dataclass
class VideoLabels:
  """What ground truth one video has, found without reading the label arrays.

  Attributes:
    entry: the `layout.VideoEntry`.
    where: text naming the label files (for messages).
    npz: path of the side-car npz, or None.
    npz_keys: arrays in the npz.
    mask_files: dict frame index -> label PNG (layouts 2 and 3).
    pickle_landmarks: dict with ``frame_index`` int `[N]`, ``landmarks`` `[N, L, 2]`, ``visible``
      `[N, L]` from the split's landmark pickle, or None.
  """

  entry: object
  where: str
  npz: str | None = None
  npz_keys: tuple = ()
  mask_files: dict = dataclasses.field(default_factory=dict)
  pickle_landmarks: dict | None = None

  @property
  def has_parts(self):
    return "parts" in self.npz_keys or bool(self.mask_files)

  @property
  def has_landmarks(self):
    return "landmarks" in self.npz_keys or self.pickle_landmarks is not None

  def read(self):
    """Reads the label arrays: a `LoadedLabels`."""
    return LoadedLabels(self)


class LoadedLabels:
  """The label arrays of one video, frame by frame.

  Attributes:
    where: text naming the label files.
    num_frames: T of the npz (every frame of the video has labels), or None.
    frame_indices: sorted frame indices that have labels, or None (every frame).
    part_names: K+1 names from the npz, or None (defaults, ``part_<k>``).
    landmark_names: L names (defaults ``landmark_<i>`` when not in a file), or None.
    visible_given: whether the files say which landmarks are visible.
  """

  def __init__(self, labels):
    self.where = labels.where
    self._masks = labels.mask_files
    self._npz = gt_lib.read_ground_truth(labels.npz) if labels.npz else None
    npz = self._npz or {}
    self._parts = npz.get("parts")
    self._links = npz.get("links")
    self._landmarks = npz.get("landmarks")
    self._visible = npz.get("visible")
    self._landmark_rows = None
    self.num_frames = npz.get("num_frames")
    self.part_names = None
    if self._parts is not None and "part_names" not in npz.get("defaulted", ()):
      self.part_names = npz["part_names"]
    if self._landmarks is None and labels.pickle_landmarks is not None:
      table = labels.pickle_landmarks
      self._landmark_rows = {int(t): i for i, t in enumerate(table["frame_index"])}
      self._landmarks, self._visible = table["landmarks"], table["visible"]
    self.visible_given = self._visible is not None
    self.landmark_names = None
    if self._landmarks is not None:
      names = npz.get("landmark_names") if self._landmark_rows is None else None
      self.landmark_names = names or gt_lib.default_landmark_names(self._landmarks.shape[1])
    if self.num_frames is not None:
      self.frame_indices = None
    else:
      indices = set(self._masks)
      if self._landmark_rows is not None:
        indices |= set(self._landmark_rows)
      self.frame_indices = sorted(indices)

  def parts_at(self, t):
    """uint8 `[H, W]` part labels of frame `t`, or None."""
    if self._parts is not None:
      return self._parts[t]
    path = self._masks.get(t)
    return None if path is None else read_label_png(path)

  def links_at(self, t):
    """uint8 `[H, W]` raw link labels of frame `t`, or None."""
    return None if self._links is None else self._links[t]

  def landmarks_at(self, t):
    """(float32 `[L, 2]`, bool `[L]` or None) of frame `t`, or (None, None)."""
    if self._landmarks is None:
      return None, None
    row = t
    if self._landmark_rows is not None:
      row = self._landmark_rows.get(t)
      if row is None:
        return None, None
    visible = None if self._visible is None else self._visible[row]
    return self._landmarks[row], visible


def _pickle_entry(by_video, entry, pickle_path):
  """The pickle rows of one video, with frame numbers turned into frame indices, or None."""
  found = landmark_pickles.find_video(by_video, entry.name)
  if found is None:
    found = landmark_pickles.find_video(by_video, os.path.basename(entry.path.rstrip(os.sep)))
  if found is None:
    return None
  numbers = found["frame_numbers"]
  if len(numbers) == 1 and entry.num_frames == 1:  # one image = one sample (reference layout)
    indices = [0]
  else:
    _, by_number = _frame_numbers(entry)
    indices = [_index_of_number(int(n), by_number) for n in numbers]
    if any(i is None for i in indices):
      bad = next(int(n) for n, i in zip(numbers, indices, strict=True) if i is None)
      raise DataError(
        f"{pickle_path}: frame {bad} of video {entry.name!r} matches no frame of {entry.path}"
      )
  return {
    "frame_index": np.asarray(indices, np.int64),
    "landmarks": found["landmarks"],
    "visible": found["visible"],
  }


def find_split_labels(data_dir, split, entries):
  """The `VideoLabels` of every video of a split that has some ground truth.

  Args:
    data_dir: dataset root.
    split: split name.
    entries: the split's `layout.VideoEntry` list.

  Returns:
    list of `VideoLabels`, in the order of `entries`.

  Raises:
    DataError: unreadable npz, label PNGs that match no frame, several landmark pickles.
  """
  folder = os.path.join(os.fspath(data_dir), "labels", split)
  pickle_path = split_landmark_pickle(data_dir, split)
  by_video = landmark_pickles.read_landmark_pickle(pickle_path) if pickle_path else None
  out = []
  for entry in entries:
    names = [entry.name]
    stem = os.path.splitext(entry.name)[0]
    if entry.kind == "frames" and stem and stem != entry.name:
      names.append(stem)
    labels = VideoLabels(entry, where="")
    where = []
    for name in names:
      path = os.path.join(folder, name + ".npz")
      if labels.npz is None and os.path.isfile(path):
        labels.npz = path
        labels.npz_keys = _npz_keys(path)
        where.append(path)
    if "parts" not in labels.npz_keys:
      for name in names:
        mask_dir = os.path.join(folder, name)
        single = os.path.join(folder, name + ".png")
        if os.path.isdir(mask_dir) and not labels.mask_files:
          labels.mask_files = _mask_files(mask_dir, entry)
          if labels.mask_files:
            where.append(os.path.join(mask_dir, "*.png"))
        elif os.path.isfile(single) and entry.num_frames == 1 and not labels.mask_files:
          labels.mask_files = {0: single}
          where.append(single)
    if "landmarks" not in labels.npz_keys and by_video is not None:
      labels.pickle_landmarks = _pickle_entry(by_video, entry, pickle_path)
      if labels.pickle_landmarks is not None:
        where.append(f"{pickle_path} ({entry.name})")
    if labels.has_parts or labels.has_landmarks:
      labels.where = " + ".join(where)
      out.append(labels)
  return out


def _npz_keys(path):
  try:
    with np.load(path, allow_pickle=False) as data:
      return tuple(data.files)
  except Exception as e:  # zipfile.BadZipFile, OSError, ...
    raise DataError(f"cannot read ground-truth file {path}: {type(e).__name__}: {e}") from e


def _videos_text(videos, total):
  shown = ", ".join(videos[:3]) + (", ..." if len(videos) > 3 else "")
  return f"{len(videos)} of {total} labelled videos ({shown})"


def log_missing(data_dir, split, labels):
  """Logs, once per split and piece, what ground truth is missing and which metric skips it.

  Args:
    data_dir: dataset root.
    split: split name.
    labels: `find_split_labels`' result.
  """
  where = os.path.join(os.fspath(data_dir), "labels", split)
  total = len(labels)
  pieces = (
    ("has_parts", "no part labels (parts)", "foreground and part IoU"),
    ("has_landmarks", "no landmarks", "landmark regression"),
  )
  for attribute, missing, metric in pieces:
    videos = [v.entry.name for v in labels if not getattr(v, attribute)]
    if not videos:
      continue
    if len(videos) == total:
      _log_once(logging.WARNING, f"{where}: {missing} in any video: {metric} skipped")
    else:
      _log_once(
        logging.WARNING,
        f"{where}: {missing} for {_videos_text(videos, total)}: {metric} skip their frames",
      )
  without_visible = [
    v.entry.name
    for v in labels
    if v.npz and "landmarks" in v.npz_keys and "visible" not in v.npz_keys
  ]
  if without_visible:
    _log_once(
      logging.INFO,
      f"{where}: no visible array for {_videos_text(without_visible, total)}: a landmark counts as "
      "visible when it is finite and inside the frame",
    )
  unnamed = [v.entry.name for v in labels if v.has_parts and "part_names" not in v.npz_keys]
  if unnamed:
    _log_once(
      logging.INFO,
      f"{where}: no part_names for {_videos_text(unnamed, total)}: GT parts are called part_1, "
      "part_2, ...",
    )
