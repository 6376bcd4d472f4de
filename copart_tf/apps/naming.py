"""Naming the learned parts once, so every later output (overlays, tracks, exports) uses the names.

Names are K+1 strings, ``[0] = "background"``, stored next to the checkpoints in
``<run dir>/part_names.json`` (`copart_tf.model.loading.write_part_names`). Loading the run
(`Segmenter.load`, `copart_tf.export`) picks them up; an export bakes them into its ``metadata``
signature and ``assets/part_names.txt``, so a server needs a NEW export version to see new names.

Two ways to get them:

- by hand: K names for the foreground parts, in part order (background implied);
- from ground truth (`names_from_labels`): every learned part gets the name of the GT part it
  overlaps most on a labelled split (the evaluation's majority mapping, "label the parts once").
  Several learned parts can map to the same GT part: the one with the largest overlap gets the
  plain name, the others ``<name>_2``, ``<name>_3``, ... by decreasing overlap. A learned part
  whose majority is the GT background (or that never appears) is named ``background_<k>`` with
  k its learned index, so it stays recognisable as "not a body part".
"""

import itertools
import re

import numpy as np

from copart_tf.errors import ConfigError, DataError
from copart_tf.evaluation import metrics

BACKGROUND = "background"
_BAD_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def validate_names(names, num_parts):
  """Checks K foreground names and returns the K+1 list (background first).

  Args:
    names: list of K strings (whitespace around each is stripped).
    num_parts: K of the model.

  Returns:
    list of K+1 names, ``[0] = "background"``.

  Raises:
    ConfigError: wrong count, empty, duplicate, reserved or unprintable names.
  """
  names = [str(n).strip() for n in names]
  if len(names) != num_parts:
    raise ConfigError(
      f"--names has {len(names)} name{'s' if len(names) != 1 else ''} but the model has "
      f"K={num_parts} parts: give exactly {num_parts} comma-separated names, one per foreground "
      "part in part order (background is implied, do not list it)"
    )
  for i, name in enumerate(names, start=1):
    if not name:
      raise ConfigError(f"--names: name {i} is empty")
    if _BAD_CHARACTERS.search(name):
      raise ConfigError(f"--names: name {i} ({name!r}) contains control characters")
    if name.lower() == BACKGROUND:
      raise ConfigError(f"--names: name {i} is 'background', which is reserved for part 0")
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ConfigError(f"--names: duplicate names {duplicates} (every part needs its own name)")
  return [BACKGROUND] + names


def parse_names(text, num_parts):
  """``"head,torso,..."`` -> validated K+1 names (see `validate_names`)."""
  return validate_names(str(text).split(","), num_parts)


def names_from_mapping(mapping, confusion, gt_names):
  """Names of the learned parts from a majority mapping (rules in the module docstring).

  Args:
    mapping: `[K+1]` learned label -> GT label (`metrics.majority_mapping`).
    confusion: `[K+1, K_gt+1]` pixel counts the mapping came from.
    gt_names: K_gt+1 GT part names, [0] = background.

  Returns:
    list of K+1 names, ``[0] = "background"``, all distinct.
  """
  mapping = np.asarray(mapping, np.int64)
  confusion = np.asarray(confusion, np.int64)
  names = [BACKGROUND] + [None] * (len(mapping) - 1)
  by_gt = {}
  for k in range(1, len(mapping)):
    g = int(mapping[k])
    if g == 0:
      names[k] = f"{BACKGROUND}_{k}"
    else:
      by_gt.setdefault(g, []).append(k)
  taken = set(names[:1]) | {n for n in names if n}
  for g, parts in sorted(by_gt.items()):
    base = str(gt_names[g])
    parts.sort(key=lambda k, g=g: (-int(confusion[k, g]), k))
    for rank, k in enumerate(parts, start=1):
      name = base if rank == 1 else f"{base}_{rank}"
      while name in taken:  # e.g. a GT part itself called "torso_2"
        name += "_"
      names[k] = name
      taken.add(name)
  return names


def confusion_from_labels(
  predict_fn, data_dir, split, image_size, num_parts, frames_per_video=16, batch_size=16
):
  """Accumulates learned-vs-GT pixel counts over a labelled split.

  Args:
    predict_fn: uint8 `[N, S, S, 3]` -> int labels `[N, S, S]`.
    data_dir: dataset root with part labels under ``labels/`` (any layout of
      `copart_tf.data.labels`; frames without part labels are not used).
    split: split name.
    image_size: S.
    num_parts: K of the model.
    frames_per_video: frames read per video (None = all).
    batch_size: frames per `predict_fn` call.

  Returns:
    (confusion `[K+1, K_gt+1]` int64, GT part names (K_gt+1; ``part_<k>`` when the labels name
    no parts), number of frames).

  Raises:
    DataError: no part labels in the split, unreadable files, GT names that disagree.
  """
  from copart_tf.data import pipeline

  frames = iter(pipeline.iterate_eval_frames(data_dir, split, image_size, frames_per_video))
  frames = (f for f in frames if f["parts"] is not None)  # landmark-only frames name nothing
  confusion = np.zeros([num_parts + 1, 2], np.int64)
  gt_names = None
  count = 0
  while True:
    chunk = list(itertools.islice(frames, batch_size))
    if not chunk:
      break
    labels = np.asarray(predict_fn(np.stack([f["image"] for f in chunk])))
    for frame, pred in zip(chunk, labels, strict=True):
      if frame["part_names"] is not None:
        names = [str(n) for n in frame["part_names"]]
        if gt_names is None:
          gt_names = names
        elif names != gt_names:
          raise DataError(
            f"{data_dir}: video {frame['video']} has GT part names {names}, others {gt_names}"
          )
      num_gt = max(int(frame["parts"].max()), confusion.shape[1] - 1, 1)
      if gt_names is not None:
        if num_gt > len(gt_names) - 1:
          raise DataError(
            f"{data_dir}: video {frame['video']} has GT part label {num_gt} but only "
            f"{len(gt_names) - 1} GT parts are named ({gt_names})"
          )
        num_gt = len(gt_names) - 1
      if num_gt + 1 > confusion.shape[1]:
        confusion = np.pad(confusion, [(0, 0), (0, num_gt + 1 - confusion.shape[1])])
      confusion += metrics.confusion_counts(pred, frame["parts"], num_parts, num_gt)
      count += 1
  if not count:
    raise DataError(
      f"{data_dir}: no part labels in split {split!r} (parts in labels/{split}/<video>.npz or "
      f"labels/{split}/<video>/<frame>.png): nothing to name the parts from"
    )
  if gt_names is None:
    from copart_tf.data import ground_truth

    gt_names = ground_truth.default_part_names(confusion.shape[1] - 1)
  return confusion, gt_names, count


def names_from_labels(
  predict_fn, data_dir, split, image_size, num_parts, frames_per_video=16, batch_size=16
):
  """Learned part names from ground truth (majority mapping on `split`).

  Returns:
    dict: ``names`` (K+1), ``mapping`` `[K+1]` (GT label per learned part), ``gt_names``,
    ``overlap`` `[K+1]` (fraction of each learned part's pixels on its GT part; NaN if absent),
    ``pixels`` `[K+1]` (pixels of each learned part), ``frames`` (frames used).
  """
  confusion, gt_names, count = confusion_from_labels(
    predict_fn, data_dir, split, image_size, num_parts, frames_per_video, batch_size
  )
  mapping = metrics.majority_mapping(confusion)
  pixels = confusion.sum(axis=1)
  hits = confusion[np.arange(len(mapping)), mapping]
  with np.errstate(invalid="ignore", divide="ignore"):
    overlap = np.where(pixels > 0, hits / np.maximum(pixels, 1), np.nan)
  return {
    "names": names_from_mapping(mapping, confusion, gt_names),
    "mapping": mapping,
    "gt_names": gt_names,
    "overlap": overlap,
    "pixels": pixels,
    "frames": count,
  }


def format_mapping(result):
  """Human-readable table of `names_from_labels`' result."""
  lines = ["part  name                  GT part               overlap  pixels"]
  for k in range(1, len(result["names"])):
    g = int(result["mapping"][k])
    overlap = result["overlap"][k]
    overlap_text = "-" if overlap != overlap else f"{100 * overlap:5.1f}%"
    lines.append(
      f"{k:4d}  {result['names'][k]:<20.20}  {result['gt_names'][g]:<20.20}  {overlap_text:>7}  "
      f"{int(result['pixels'][k])}"
    )
  return "\n".join(lines)
