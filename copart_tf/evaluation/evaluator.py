"""Streaming evaluation of a part segmenter against ground truth (DESIGN.md §7).

The evaluator consumes plain frame records, so it does not depend on the model or the data
pipeline. A record is a dict:

- ``pred_labels``: int `[H, W]`, the model's hard labels (0 = background, 1..K).
- ``gt_parts``: uint8 `[H, W]`, ground-truth parts (0 = background, 1..K_gt); optional: frames
  without it count only for the landmark metric.
- ``landmarks``: float32 `[L, 2]` (x, y) pixels (optional: frames without it count only for the
  segmentation metrics).
- ``visible``: bool `[L]` (optional, default all visible; non-finite landmarks count as missing).
- ``part_names``: K_gt + 1 GT part names (optional; the first record that has them names the GT
  parts unless the `Evaluator` was given names, and later records must agree).

A metric that the records cannot give (no frame with ``gt_parts``, or none with ``landmarks``, on
the fit or the test split) is None in the result, with the reason in ``result()["skipped"]``.
- ``image``: uint8 `[H, W, 3]` (optional, only used for the report's grid).
- ``video``, ``frame_index`` (optional, only used to label the grid's samples).

Only what the metrics need is kept: confusion matrices (summed over the fit split, per image on the
test split, `[K+1, K_gt+1]` integers each), per-image part centroids (`[K, 2]`), landmarks, and a
few sample frames for the report. Fit and test frames may be added in any order.

Typical use::

  results = evaluate(fit_records, test_records, num_pred_parts=10,
                     gt_part_names=names, report_dir="runs/eval")
"""

import numpy as np

from copart_tf.errors import DataError
from copart_tf.evaluation import baselines, metrics, report

FIT = "fit"
TEST = "test"
MODEL = "model"
POSITION_KMEANS = "position_kmeans"
MEAN_LANDMARK = "mean_landmark"

DEFINITIONS = {
  "foreground_iou": (
    "per test image IoU of (pred != 0) vs (gt != 0), mean over images; two empty sets have IoU 1. "
    "foreground_iou_dataset sums intersections and unions over all test pixels."
  ),
  "part_iou": (
    "learned parts mapped to GT labels on the fit split (majority: each learned part -> the GT "
    "label, background included, it overlaps most; hungarian: one-to-one on the fit IoU matrix, "
    "unmatched learned parts -> background). Headline 'mean' = mean over GT foreground parts of "
    "the dataset-level IoU (intersection and union summed over all test pixels); GT parts nobody "
    "maps to score 0; a GT part absent from the test split and never predicted is undefined (null) "
    "and left out. 'per_image_mean' averages per-image IoUs over the parts present or predicted."
  ),
  "landmarks": (
    "features = pixel centroids of the K learned parts (absent part: its mean fit-split centroid, "
    "image centre if never seen); OLS with intercept per landmark coordinate on the fit split "
    "(invisible GT skipped); MAE per coordinate on the test split; sum_256 = sum over coordinates "
    "in pixels of a 256x256 frame (the paper's number), mean_256 / mean_px = mean per coordinate."
  ),
  "position_kmeans": (
    "per image k-means (k-means++ with seed {seed}, <= {iters} Lloyd iterations) of the (x, y) of "
    "the model's foreground pixels into K clusters, labels ordered by centroid (y, x): 1 = top-most."
  ),
  "mean_landmark": "each landmark coordinate predicted as its fit-split mean.",
}


class _MethodStats:
  """Accumulators of one label source (the model or a baseline)."""

  def __init__(self):
    self.fit_confusion = None  # [K+1, Kgt+1] int64, summed
    self.test_confusions = []  # list of [K+1, Kgt_i+1]
    self.centroids = {FIT: [], TEST: []}  # lists of [K, 2]


def _pad_columns(array, num_cols):
  """Pads the last axis of a confusion matrix with zeros up to `num_cols`."""
  pad = num_cols - array.shape[-1]
  if pad <= 0:
    return array
  widths = [(0, 0)] * (array.ndim - 1) + [(0, pad)]
  return np.pad(array, widths)


class Evaluator:
  """Streaming evaluator of the model and the reference baselines.

  Args:
    num_pred_parts: K, the model's number of foreground parts (labels 1..K).
    gt_part_names: list of K_gt + 1 GT part names, ``[0]`` = background. If None, K_gt is the
      largest GT label seen (or `num_gt_parts`) and parts are named ``part_<i>``, unless a
      record brings ``part_names``.
    num_gt_parts: K_gt when `gt_part_names` is not given.
    with_baselines: also evaluate the position k-means and mean-landmark baselines.
    kmeans_seed: k-means++ seed of the position k-means baseline.
    kmeans_iters: maximum Lloyd iterations of the position k-means baseline.
    num_samples: number of test frames kept for the report's grid (the first frame of each new
      video, topped up with the first test frames).
    hungarian_criterion: "iou" or "overlap", the matrix the one-to-one assignment maximises.
  """

  def __init__(
    self,
    num_pred_parts,
    gt_part_names=None,
    num_gt_parts=None,
    with_baselines=True,
    kmeans_seed=baselines.DEFAULT_KMEANS_SEED,
    kmeans_iters=baselines.DEFAULT_KMEANS_ITERS,
    num_samples=8,
    hungarian_criterion="iou",
  ):
    if int(num_pred_parts) < 1:
      raise DataError(f"num_pred_parts must be >= 1, got {num_pred_parts}")
    self.num_pred_parts = int(num_pred_parts)
    if gt_part_names is not None:
      gt_part_names = [str(n) for n in gt_part_names]
      if len(gt_part_names) < 2:
        raise DataError(
          f"gt_part_names must list background and at least one part, got {gt_part_names}"
        )
      if num_gt_parts is not None and num_gt_parts != len(gt_part_names) - 1:
        raise DataError(
          f"num_gt_parts={num_gt_parts} disagrees with {len(gt_part_names)} gt_part_names"
        )
      num_gt_parts = len(gt_part_names) - 1
    self._gt_part_names = gt_part_names
    self._fixed_gt = num_gt_parts is not None
    self.num_gt_parts = int(num_gt_parts) if num_gt_parts is not None else 0
    self.with_baselines = with_baselines
    self.kmeans_seed = kmeans_seed
    self.kmeans_iters = kmeans_iters
    self.num_samples = int(num_samples)
    self.hungarian_criterion = hungarian_criterion

    self._methods = {MODEL: _MethodStats()}
    if with_baselines:
      self._methods[POSITION_KMEANS] = _MethodStats()
    self._frame_size = None
    self._has_landmarks = None
    self._num_landmarks = None
    self._landmarks = {FIT: [], TEST: []}
    self._visible = {FIT: [], TEST: []}
    self._num_frames = {FIT: 0, TEST: 0}
    self._num_part_frames = {FIT: 0, TEST: 0}
    self._fg_ious = []
    self._fg_inter = 0
    self._fg_union = 0
    self._video_samples = []
    self._first_samples = []
    self._sample_videos = set()

  @property
  def gt_part_names(self):
    """K_gt + 1 names, ``[0] = "background"`` unless given otherwise."""
    if self._gt_part_names is not None:
      return list(self._gt_part_names)
    return ["background"] + [f"part_{i}" for i in range(1, self.num_gt_parts + 1)]

  @property
  def samples(self):
    """Up to `num_samples` kept test frames (dicts with ``image`` (or None), ``pred_labels``,
    ``gt_parts``, ``video``, ``frame_index``), distinct videos first."""
    out = list(self._video_samples)
    chosen = {id(s) for s in out}
    for s in self._first_samples:
      if len(out) >= self.num_samples:
        break
      if id(s) not in chosen:
        out.append(s)
    return out[: self.num_samples]

  def add_fit_frame(self, record):
    """Adds one frame of the fit split (used to map parts and fit the landmark regressor)."""
    self._add(record, FIT)

  def add_test_frame(self, record):
    """Adds one frame of the test split (where every metric is measured)."""
    self._add(record, TEST)

  def add_frames(self, records, split):
    """Adds every record of an iterable to `split` ("fit" or "test")."""
    if split not in (FIT, TEST):
      raise ValueError(f"split must be 'fit' or 'test', got {split!r}")
    for record in records:
      self._add(record, split)

  def _add(self, record, split):
    where = f"{split} frame {self._num_frames[split]}"
    if "video" in record:
      where += f" (video {record['video']}, frame {record.get('frame_index')})"
    try:
      pred = np.asarray(record["pred_labels"])
      gt = record.get("gt_parts")
      gt = None if gt is None else np.asarray(gt)
    except KeyError as e:
      raise DataError(f"{where}: record has no {e.args[0]!r}") from None
    if pred.ndim != 2 or (gt is not None and gt.shape != pred.shape):
      shape = None if gt is None else gt.shape
      raise DataError(f"{where}: pred_labels {pred.shape} and gt_parts {shape} must be [H, W]")
    if self._frame_size is None:
      self._frame_size = pred.shape
    elif pred.shape != self._frame_size:
      raise DataError(f"{where}: frame size {pred.shape} differs from earlier {self._frame_size}")
    if pred.size and (pred.min() < 0 or pred.max() > self.num_pred_parts):
      raise DataError(
        f"{where}: pred_labels in [{pred.min()}, {pred.max()}], expected 0..{self.num_pred_parts}"
      )
    if record.get("part_names") is not None:
      self._adopt_names(record["part_names"], where)
    if gt is not None:
      gt_max = int(gt.max()) if gt.size else 0
      if gt_max > self.num_gt_parts:
        if self._fixed_gt:
          raise DataError(
            f"{where}: gt_parts holds label {gt_max} but there are {self.num_gt_parts} GT parts"
          )
        self.num_gt_parts = gt_max
    has_landmarks = self._add_landmarks(record, split, where)
    self._num_frames[split] += 1
    if gt is None and not has_landmarks:
      return

    label_sources = {MODEL: pred}
    if self.with_baselines:
      label_sources[POSITION_KMEANS] = baselines.position_kmeans_labels(
        pred, self.num_pred_parts, seed=self.kmeans_seed, num_iters=self.kmeans_iters
      )
    for name, labels in label_sources.items():
      stats = self._methods[name]
      if gt is not None:
        conf = metrics.confusion_counts(labels, gt, self.num_pred_parts, self.num_gt_parts)
        if split == FIT:
          if stats.fit_confusion is None:
            stats.fit_confusion = conf
          else:
            width = max(conf.shape[1], stats.fit_confusion.shape[1])
            stats.fit_confusion = _pad_columns(stats.fit_confusion, width) + _pad_columns(
              conf, width
            )
        else:
          stats.test_confusions.append(conf)
      if has_landmarks:  # centroids stay aligned with self._landmarks[split]
        centroids, _ = metrics.part_centroids(labels, self.num_pred_parts)
        stats.centroids[split].append(centroids)

    if gt is not None:
      self._num_part_frames[split] += 1
      if split == TEST:
        inter, union = metrics.foreground_counts(pred, gt)
        self._fg_ious.append(1.0 if union == 0 else inter / union)
        self._fg_inter += inter
        self._fg_union += union
        self._keep_sample(record, pred, gt)

  def _adopt_names(self, names, where):
    """The first record's GT part names name the GT parts; later ones must agree."""
    names = [str(n) for n in names]
    if self._gt_part_names is None:
      if len(names) < 2 or self.num_gt_parts > len(names) - 1:
        raise DataError(
          f"{where}: part_names {names} do not cover the GT labels seen so far (up to "
          f"{self.num_gt_parts})"
        )
      self._gt_part_names = names
      self._fixed_gt = True
      self.num_gt_parts = len(names) - 1
    elif names != self._gt_part_names:
      raise DataError(
        f"{where}: GT part names {names} differ from earlier ones {self._gt_part_names}"
      )

  def _add_landmarks(self, record, split, where):
    """Keeps a record's landmarks; returns whether it has any."""
    landmarks = record.get("landmarks")
    if landmarks is None:
      return False
    self._has_landmarks = True
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[1] != 2:
      raise DataError(f"{where}: landmarks must be [L, 2], got {landmarks.shape}")
    if self._num_landmarks is None:
      self._num_landmarks = landmarks.shape[0]
    elif landmarks.shape[0] != self._num_landmarks:
      raise DataError(
        f"{where}: {landmarks.shape[0]} landmarks, earlier frames had {self._num_landmarks}"
      )
    visible = record.get("visible")
    if visible is None:
      visible = np.ones(landmarks.shape[0], dtype=bool)
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != (landmarks.shape[0],):
      raise DataError(f"{where}: visible must be [{landmarks.shape[0]}], got {visible.shape}")
    self._landmarks[split].append(landmarks)
    self._visible[split].append(visible)
    return True

  def _keep_sample(self, record, pred, gt):
    image = record.get("image")
    sample = {
      "image": None if image is None else np.asarray(image).copy(),
      "pred_labels": pred.copy(),
      "gt_parts": gt.copy(),
      "video": record.get("video"),
      "frame_index": record.get("frame_index"),
    }
    video = record.get("video")
    if len(self._video_samples) < self.num_samples and video not in self._sample_videos:
      self._sample_videos.add(video)
      self._video_samples.append(sample)
      if len(self._first_samples) < self.num_samples:
        self._first_samples.append(sample)
    elif len(self._first_samples) < self.num_samples:
      self._first_samples.append(sample)

  # ----------------------------------------------------------------------------------------------

  def result(self):
    """Computes every metric.

    Returns:
      JSON-serialisable dict (NaN written as None)::

        {"num_pred_parts", "num_gt_parts", "gt_part_names", "num_fit_frames", "num_test_frames",
         "frame_size": [H, W], "num_landmarks", "definitions": {...},
         "methods": {
           "model" / "position_kmeans": {
             "foreground_iou", "foreground_iou_dataset",
             "part_iou": {"majority" / "hungarian": {"mapping": [K+1] learned -> GT label,
                 "mapping_names": [K+1], "per_part": [K_gt], "mean", "background",
                 "per_part_per_image": [K_gt], "per_image_mean"}},
             "landmarks": {"sum_256", "mean_256", "sum_px", "mean_px", "num_coordinates",
                           "per_coordinate_256": [L][2], "per_coordinate_px": [L][2]} or None},
           "mean_landmark": {"landmarks": {...}}},
         "skipped": {metric: reason}}

      A skipped metric (`skipped_metrics`) is None in every method.

    Raises:
      DataError: no fit or no test frames, or no metric can be computed.
    """
    if self._num_frames[FIT] == 0:
      raise DataError("no fit frames: the part mapping and landmark regressor need a fit split")
    if self._num_frames[TEST] == 0:
      raise DataError("no test frames to evaluate")
    skipped = self.skipped_metrics()
    if len(skipped) == 3:
      raise DataError("nothing to evaluate: " + "; ".join(skipped.values()))
    k_gt = self.num_gt_parts
    names = self.gt_part_names
    frame_size = tuple(int(s) for s in self._frame_size)
    with_parts = "part_iou" not in skipped
    with_landmarks = "landmarks" not in skipped
    methods = {}
    for name, stats in self._methods.items():
      part = None
      if with_parts:
        fit_conf = _pad_columns(stats.fit_confusion, k_gt + 1)
        test_confs = np.stack([_pad_columns(c, k_gt + 1) for c in stats.test_confusions])
        test_conf = test_confs.sum(axis=0)
        part = {}
        mappings = {
          "majority": metrics.majority_mapping(fit_conf),
          "hungarian": metrics.hungarian_mapping(fit_conf, criterion=self.hungarian_criterion),
        }
        for variant, mapping in mappings.items():
          scores = metrics.part_iou(test_conf, mapping, k_gt, per_image_confusions=test_confs)
          part[variant] = {
            "mapping": mapping,
            "mapping_names": [names[g] for g in mapping],
            **scores,
          }
      with_fg = "foreground_iou" not in skipped
      methods[name] = {
        "foreground_iou": float(np.mean(self._fg_ious)) if with_fg else None,
        "foreground_iou_dataset": (
          (1.0 if self._fg_union == 0 else self._fg_inter / self._fg_union) if with_fg else None
        ),
        "part_iou": part,
        "landmarks": self._landmark_metrics(stats, frame_size) if with_landmarks else None,
      }
    if self.with_baselines:
      methods[MEAN_LANDMARK] = {
        "foreground_iou": None,
        "foreground_iou_dataset": None,
        "part_iou": None,
        "landmarks": (
          baselines.mean_landmark_baseline(
            np.stack(self._landmarks[FIT]),
            np.stack(self._visible[FIT]),
            np.stack(self._landmarks[TEST]),
            np.stack(self._visible[TEST]),
            frame_size,
          )
          if with_landmarks
          else None
        ),
      }
    out = {
      "num_pred_parts": self.num_pred_parts,
      "num_gt_parts": k_gt,
      "gt_part_names": names,
      "num_fit_frames": self._num_frames[FIT],
      "num_test_frames": self._num_frames[TEST],
      "frame_size": list(frame_size),
      "num_landmarks": self._num_landmarks if self._has_landmarks else 0,
      "definitions": {
        k: v.format(seed=self.kmeans_seed, iters=self.kmeans_iters) for k, v in DEFINITIONS.items()
      },
      "methods": methods,
      "skipped": skipped,
    }
    return to_jsonable(out)

  def skipped_metrics(self):
    """Metrics the frames added so far cannot give: dict metric -> one-line reason.

    Keys: ``"foreground_iou"`` (no test frame with part labels), ``"part_iou"`` (no fit or no test
    frame with part labels) and ``"landmarks"`` (no fit or test frame with visible landmarks).
    """
    skipped = {}
    if self._num_part_frames[TEST] == 0:
      skipped["foreground_iou"] = (
        "no part labels (gt_parts) on the test split: foreground IoU skipped"
      )
    parts_missing = [s for s in (FIT, TEST) if self._num_part_frames[s] == 0]
    if parts_missing:
      skipped["part_iou"] = (
        f"no part labels (gt_parts) on the {' and '.join(parts_missing)} split: part IoU skipped"
      )
    landmarks_missing = [s for s in (FIT, TEST) if not any(v.any() for v in self._visible[s])]
    if landmarks_missing:
      skipped["landmarks"] = (
        f"no (visible) landmarks on the {' and '.join(landmarks_missing)} split: landmark "
        "regression skipped"
      )
    return skipped

  def _landmark_metrics(self, stats, frame_size):
    return metrics.centroid_landmark_regression(
      np.stack(stats.centroids[FIT]),
      np.stack(self._landmarks[FIT]),
      np.stack(self._visible[FIT]),
      np.stack(stats.centroids[TEST]),
      np.stack(self._landmarks[TEST]),
      np.stack(self._visible[TEST]),
      frame_size,
    )


def to_jsonable(value):
  """Converts NumPy scalars / arrays to Python types, NaN and inf to None (strict JSON)."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, np.bool_ | bool):
    return bool(value)
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating | float):
    value = float(value)
    return value if np.isfinite(value) else None
  return value


def evaluate(
  fit_frames, test_frames, num_pred_parts, gt_part_names=None, report_dir=None, **options
):
  """Evaluates the model (and the baselines) on two iterables of frame records.

  Args:
    fit_frames: iterable of records (module docstring) used to map parts / fit the regressor.
    test_frames: iterable of records on which the metrics are measured.
    num_pred_parts: K, the model's number of foreground parts.
    gt_part_names: K_gt + 1 names, ``[0]`` = background (optional).
    report_dir: if given, `report.write_report` writes metrics.json, report.md and the PNGs there.
    **options: further `Evaluator` arguments (num_gt_parts, with_baselines, kmeans_seed, ...).

  Returns:
    The `Evaluator.result` dict.
  """
  evaluator = Evaluator(num_pred_parts, gt_part_names=gt_part_names, **options)
  evaluator.add_frames(fit_frames, FIT)
  evaluator.add_frames(test_frames, TEST)
  results = evaluator.result()
  if report_dir is not None:
    report.write_report(results, report_dir, samples=evaluator.samples)
  return results
