"""Scanning a dataset in the FOMM layout (DESIGN.md §6, docs/ARCHITECTURE.md).

::

  root/train/<video>/<frame>.png   frame folder (any name, also ``xxx.mp4``), frames sorted by name
  root/train/<video>.mp4|.gif|...  video file
  root/train/<video>.png|.jpg      horizontal strip of square frames
  root/test/...                    same
  root/labels/<split>/<video>.npz  optional ground truth

If neither ``train/`` nor ``test/`` exists, the videos directly under ``root`` are split 80/20
(test = ceil(20 %), as sklearn's ``train_test_split`` which FOMM uses) by a permutation with the
fixed seed `SPLIT_SEED`, so every run and every tool sees the same split.

Scanning validates what is cheap and fails fast with one line naming the culprit: the split
folder exists and holds videos, frame folders are not empty, strips have square frames (header
only), video files are not empty, and the headers of the first and last frame of a sample of
videos can be read. Frames are decoded only later, by the pipeline.

For training (`copart_tf.data.pipeline.make_pair_dataset`) videos known to have one frame are
skipped with a warning (`min_frames`), and the first frame's header of every frame folder is read
(one file per video, `frame_sizes`): the size the pipeline expects of the video's other frames.
"""

import dataclasses
import logging
import math
import os
import threading

import numpy as np

from copart_tf.data import video_io
from copart_tf.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SPLIT_SEED = 0
TEST_FRACTION = 0.2
ON_BAD_FRAME_CHOICES = ("fail", "skip")
_RESERVED_DIRS = ("labels", "train", "test")

_warned = set()
_warned_lock = threading.Lock()


def warn_once(key, message):
  """Logs `message` as a warning the first time `key` is seen in this process."""
  with _warned_lock:
    if key in _warned:
      return
    _warned.add(key)
  logger.warning(message)


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One video of a split.

  Attributes:
    name: folder name (frame folders, kept as is, e.g. ``abc#0001.mp4``) or file name without
      extension (video files and strips); the ground truth is ``labels/<split>/<name>.npz``.
    path: full path of the folder or file.
    kind: ``"frames"`` (frame folder), ``"video"`` (mp4/gif/... file) or ``"strip"``.
    num_frames: number of frames, or None for video files (counted lazily by the reader).
    frame_files: sorted frame paths of a frame folder (empty otherwise).
    identity: text before the first ``#`` of the name (VoxCeleb ``person#ytid#start#end``).
    frame_size: (height, width) of the first frame of a frame folder or strip when its header
      was read (the size the training pipeline expects of the video's other frames), else None.
  """

  name: str
  path: str
  kind: str
  num_frames: int | None
  frame_files: tuple = ()
  identity: str = ""
  frame_size: tuple | None = None


def identity_of(name):
  """VoxCeleb identity of a video name: the text before the first ``#``."""
  return name.split("#", 1)[0]


def check_on_bad_frame(on_bad_frame):
  """Raises ConfigError unless `on_bad_frame` is 'fail' or 'skip'."""
  if on_bad_frame not in ON_BAD_FRAME_CHOICES:
    raise ConfigError(f"on_bad_frame must be one of {ON_BAD_FRAME_CHOICES}, got {on_bad_frame!r}")


def _is_candidate(path, name):
  if name.startswith("."):
    return False
  if os.path.isdir(path):
    return True
  return video_io.is_video_file(name) or os.path.splitext(name)[1].lower() in (
    video_io.STRIP_EXTENSIONS
  )


def _list_candidates(folder, exclude=()):
  try:
    names = sorted(os.listdir(folder))
  except OSError as e:
    raise DataError(f"cannot list {folder}: {e}") from e
  return [
    os.path.join(folder, n)
    for n in names
    if n not in exclude and _is_candidate(os.path.join(folder, n), n)
  ]


def split_video_paths(data_dir, split, split_seed=SPLIT_SEED):
  """Paths of the videos of one split, sorted by name.

  Args:
    data_dir: dataset root.
    split: ``"train"``, ``"test"`` or another sub-folder name of the root.
    split_seed: seed of the automatic 80/20 split (used only without train/ and test/).

  Returns:
    list of paths (folders or files).

  Raises:
    DataError: missing root or split folder, or a split without videos.
  """
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise DataError(f"data directory {data_dir} does not exist")
  split_dir = os.path.join(data_dir, split)
  has_train = os.path.isdir(os.path.join(data_dir, "train"))
  has_test = os.path.isdir(os.path.join(data_dir, "test"))
  if os.path.isdir(split_dir):
    paths = _list_candidates(split_dir)
    where = split_dir
  elif has_train or has_test:
    present = [s for s, ok in (("train/", has_train), ("test/", has_test)) if ok]
    raise DataError(f"split folder {split_dir} is missing (found {', '.join(present)})")
  elif split in ("train", "test"):
    everything = _list_candidates(data_dir, exclude=_RESERVED_DIRS)
    order = np.random.default_rng(split_seed).permutation(len(everything))
    num_test = math.ceil(TEST_FRACTION * len(everything)) if len(everything) >= 2 else 0
    chosen = order[:num_test] if split == "test" else order[num_test:]
    paths = sorted(everything[i] for i in chosen)
    where = f"{data_dir} (automatic 80/20 split, no train/ or test/ folder)"
  else:
    raise DataError(f"split folder {split_dir} is missing")
  if not paths:
    raise DataError(
      f"no videos for split {split!r} in {where}: expected frame folders, "
      f"{'/'.join(video_io.VIDEO_EXTENSIONS)} files or {'/'.join(video_io.STRIP_EXTENSIONS)} "
      "frame strips"
    )
  return paths


def _sample_positions(n, sample):
  if sample is None or sample >= n:
    return set(range(n))
  if sample <= 0:
    return set()
  return {int(round(x)) for x in np.linspace(0, n - 1, sample)}


def _make_entry(path, check_headers, frame_sizes=False):
  """Builds a VideoEntry; raises DataError for a bad video."""
  name = os.path.basename(path.rstrip(os.sep))
  if os.path.isdir(path):
    files = video_io.list_frame_files(path)
    if not files:
      raise DataError(f"frame folder {path} contains no png/jpg frames")
    frame_size = None
    if check_headers or frame_sizes:
      width, height, _ = video_io.read_image_header(files[0])
      frame_size = (height, width)
    if check_headers and len(files) > 1:
      video_io.read_image_header(files[-1])
    return VideoEntry(name, path, "frames", len(files), tuple(files), identity_of(name), frame_size)
  stem = os.path.splitext(name)[0]
  if video_io.is_video_file(path):
    if os.path.getsize(path) == 0:
      raise DataError(f"video {path} is an empty file")
    num_frames = None
    if check_headers:
      reader = video_io.VideoFile(path)  # opens the container and reads its metadata
      try:
        if video_io._ext(path) in video_io.GIF_EXTENSIONS:
          num_frames = reader.num_frames
      finally:
        reader.close()
    return VideoEntry(stem, path, "video", num_frames, (), identity_of(stem))
  width, height, _ = video_io.read_image_header(path)
  num_frames = video_io.strip_num_frames(path, width, height)
  return VideoEntry(stem, path, "strip", num_frames, (), identity_of(stem), (height, height))


def warn_too_few_frames(path, num_frames, min_frames):
  """Logs (once per video) that a video with fewer than `min_frames` frames is skipped."""
  warn_once(
    (path, "frames"),
    f"skipping video {path}: it has {num_frames} frame{'' if num_frames == 1 else 's'}, and a "
    f"training pair needs {min_frames} frames of one video",
  )


def scan_split(
  data_dir,
  split,
  on_bad_frame="fail",
  validate_sample=16,
  split_seed=SPLIT_SEED,
  min_frames=1,
  frame_sizes=False,
):
  """Lists and cheaply validates the videos of one split.

  Args:
    data_dir: dataset root.
    split: ``"train"`` / ``"test"`` (or another sub-folder).
    on_bad_frame: ``"fail"`` raises DataError for the first bad video found; ``"skip"`` logs a
      warning naming it and drops it (an empty folder, empty file, non-strip image) or keeps it
      for the pipeline to substitute at read time (an unreadable sampled frame header).
    validate_sample: how many videos (evenly spread over the sorted list) get their first/last
      frame header or container metadata read; None = all. Strip headers are always read (they
      give the frame count).
    split_seed: seed of the automatic 80/20 split.
    min_frames: videos known to have fewer frames are skipped with one warning each (training
      pairs need 2); video files whose frames are not counted at scan time are kept.
    frame_sizes: read the header of the first frame of every frame folder (one file per video),
      so that every entry knows its `VideoEntry.frame_size`.

  Returns:
    list of `VideoEntry`, sorted by path.

  Raises:
    DataError: missing/empty split, a bad video in "fail" mode, no usable video in "skip" mode,
      or no video with `min_frames` frames.
    ConfigError: bad `on_bad_frame`.
  """
  check_on_bad_frame(on_bad_frame)
  paths = split_video_paths(data_dir, split, split_seed)
  sampled = _sample_positions(len(paths), validate_sample)
  entries = []
  too_short = 0
  for i, path in enumerate(paths):
    try:
      entry = _make_entry(path, check_headers=i in sampled, frame_sizes=frame_sizes)
      if entry.num_frames is not None and entry.num_frames < min_frames:
        warn_too_few_frames(path, entry.num_frames, min_frames)
        too_short += 1
        continue
      entries.append(entry)
    except DataError as e:
      if on_bad_frame == "fail":
        raise
      recovered = None
      if (i in sampled or frame_sizes) and os.path.isdir(path):
        # A frame folder with a bad sampled frame is kept: its other frames may be fine and bad
        # ones are substituted when read. A video file that cannot be opened is dropped.
        try:
          recovered = _make_entry(path, check_headers=False)
        except DataError:
          recovered = None
      if recovered is not None and recovered.num_frames < min_frames:
        warn_too_few_frames(path, recovered.num_frames, min_frames)
        too_short += 1
      elif recovered is not None:
        warn_once(path, f"on_bad_frame=skip: {e} (frames will be substituted when read)")
        entries.append(recovered)
      else:
        warn_once(path, f"on_bad_frame=skip: dropping video {path}: {e}")
  if not entries and too_short:
    raise DataError(
      f"no video of split {split!r} of {data_dir} has {min_frames} frames or more ({too_short} "
      f"of {len(paths)} have fewer; a training pair is {min_frames} frames of one video)"
    )
  if not entries:
    raise DataError(
      f"no readable videos for split {split!r} of {data_dir} (all {len(paths)} were bad, "
      "see the warnings above)"
    )
  return entries


def ground_truth_path(data_dir, split, entry):
  """Path of a video's ground-truth npz, or None if it has none.

  Looks for ``root/labels/<split>/<name>.npz`` and, for frame folders named like files
  (``xxx.mp4``), also ``<name without extension>.npz``.
  """
  folder = os.path.join(os.fspath(data_dir), "labels", split)
  candidates = [entry.name]
  stem = os.path.splitext(entry.name)[0]
  if entry.kind == "frames" and stem and stem != entry.name:
    candidates.append(stem)
  for name in candidates:
    path = os.path.join(folder, name + ".npz")
    if os.path.isfile(path):
      return path
  return None
