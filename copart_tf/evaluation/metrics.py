"""Evaluation metrics of DESIGN.md §7 in pure NumPy / SciPy (no TensorFlow).

Conventions used throughout (they are the definitions reported by `copart_tf.evaluation`):

- Label maps: `pred_labels` int `[H, W]` with 0 = background and 1..K_pred the learned parts;
  `gt_parts` int `[H, W]` with 0 = background and 1..K_gt the ground-truth parts.
- Pixel coordinates: (x, y) with x = column index, y = row index, 0 = centre of the first pixel
  (the landmark convention of the ground-truth side-car, ARCHITECTURE.md).
- Foreground IoU: per image IoU of ``pred_labels != 0`` against ``gt_parts != 0``, then the mean
  over images. The IoU of two empty sets is defined as 1 (an empty frame predicted empty is right).
- Part IoU: learned parts are mapped to GT labels on a *fit* split (`majority_mapping` or
  `hungarian_mapping`), then evaluated on a *test* split through the mapped confusion matrix. The
  headline is the **dataset-level** IoU: intersections and unions summed over all test pixels, per
  GT part, then the mean over GT foreground parts. A per-image variant (IoU per image, skipping
  images where the part is neither present nor predicted, then averaged) is reported as well. A GT
  part whose dataset-level union is empty (absent from the test split and predicted nowhere) has an
  undefined IoU (NaN) and is left out of the mean; a GT part nobody maps to gets IoU 0.
- Landmark regression: features = centroids (pixels) of the learned foreground parts, 2 K_pred
  numbers per image; a part absent from an image is filled with its mean centroid over the fit
  frames where it is present (image centre if it never appears in the fit split). One ordinary
  least-squares fit with intercept per landmark coordinate on the fit split, skipping invisible or
  non-finite ground truth. Errors are mean absolute errors per coordinate; the paper's number is
  their SUM over coordinates in pixels of a 256x256 frame (errors scaled by 256 / frame size).
"""

import numpy as np
from scipy import optimize

from copart_tf.errors import DataError

REFERENCE_FRAME_SIZE = 256


def _as_label_map(labels, name):
  """Checks a 2-D integer label map and returns it as int64."""
  labels = np.asarray(labels)
  if labels.ndim != 2:
    raise DataError(f"{name} must be a [H, W] label map, got shape {labels.shape}")
  if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
    raise DataError(f"{name} must hold integer labels, got dtype {labels.dtype}")
  labels = labels.astype(np.int64)
  if labels.size and labels.min() < 0:
    raise DataError(f"{name} holds negative labels (min {labels.min()})")
  return labels


def _check_same_shape(pred_labels, gt_parts):
  if pred_labels.shape != gt_parts.shape:
    raise DataError(
      f"pred_labels {pred_labels.shape} and gt_parts {gt_parts.shape} must have the same shape"
    )


# ------------------------------------------------------------------------------------------------
# Foreground IoU
# ------------------------------------------------------------------------------------------------


def foreground_counts(pred_labels, gt_parts):
  """Intersection and union of predicted and ground-truth foreground in one image.

  Args:
    pred_labels: `[H, W]` int, 0 = background.
    gt_parts: `[H, W]` int, 0 = background.

  Returns:
    `(intersection, union)` pixel counts (Python ints).
  """
  pred_labels = _as_label_map(pred_labels, "pred_labels")
  gt_parts = _as_label_map(gt_parts, "gt_parts")
  _check_same_shape(pred_labels, gt_parts)
  pred_fg = pred_labels != 0
  gt_fg = gt_parts != 0
  return int(np.count_nonzero(pred_fg & gt_fg)), int(np.count_nonzero(pred_fg | gt_fg))


def foreground_iou(pred_labels, gt_parts):
  """Foreground IoU of one image (DESIGN.md §7, Table 1).

  Args:
    pred_labels: `[H, W]` int, predicted foreground = label != 0.
    gt_parts: `[H, W]` int, GT foreground = label != 0.

  Returns:
    IoU in [0, 1]; 1.0 when both foregrounds are empty.
  """
  intersection, union = foreground_counts(pred_labels, gt_parts)
  return 1.0 if union == 0 else intersection / union


def mean_foreground_iou(pred_label_maps, gt_part_maps):
  """Mean over images of `foreground_iou`.

  Args:
    pred_label_maps: iterable of `[H, W]` int label maps.
    gt_part_maps: iterable of `[H, W]` int GT maps, same length.

  Returns:
    The mean IoU (NaN for no images).
  """
  ious = [foreground_iou(p, g) for p, g in zip(pred_label_maps, gt_part_maps, strict=True)]
  return float(np.mean(ious)) if ious else float("nan")


# ------------------------------------------------------------------------------------------------
# Part IoU: confusion matrices, mappings, IoU
# ------------------------------------------------------------------------------------------------


def confusion_counts(pred_labels, gt_parts, num_pred_parts, num_gt_parts):
  """Pixel co-occurrence counts of learned and GT labels in one image.

  Args:
    pred_labels: `[H, W]` int in 0..num_pred_parts.
    gt_parts: `[H, W]` int in 0..num_gt_parts.
    num_pred_parts: K_pred (foreground learned parts).
    num_gt_parts: K_gt (foreground GT parts).

  Returns:
    `[K_pred + 1, K_gt + 1]` int64, ``counts[p, g]`` = number of pixels labelled p and g.

  Raises:
    DataError: labels out of range or mismatched shapes.
  """
  pred_labels = _as_label_map(pred_labels, "pred_labels")
  gt_parts = _as_label_map(gt_parts, "gt_parts")
  _check_same_shape(pred_labels, gt_parts)
  if pred_labels.size and pred_labels.max() > num_pred_parts:
    raise DataError(
      f"pred_labels holds label {pred_labels.max()} but num_pred_parts is {num_pred_parts}"
    )
  if gt_parts.size and gt_parts.max() > num_gt_parts:
    raise DataError(f"gt_parts holds label {gt_parts.max()} but num_gt_parts is {num_gt_parts}")
  n_gt = num_gt_parts + 1
  flat = pred_labels.ravel() * n_gt + gt_parts.ravel()
  counts = np.bincount(flat, minlength=(num_pred_parts + 1) * n_gt)
  return counts.reshape(num_pred_parts + 1, n_gt).astype(np.int64)


def majority_mapping(confusion):
  """Many-to-one mapping: each learned part -> the GT label it overlaps most ("label once").

  Args:
    confusion: `[K_pred + 1, K_gt + 1]` pixel counts accumulated over the fit split.

  Returns:
    `[K_pred + 1]` int64, ``mapping[p]`` = GT label (0 = background included) of learned part p.
    ``mapping[0] = 0`` always (the model's background stays background). A learned part that never
    occurs in the fit split maps to background; ties go to the smaller GT label.
  """
  confusion = np.asarray(confusion, dtype=np.int64)
  mapping = np.argmax(confusion, axis=1).astype(np.int64)
  mapping[confusion.sum(axis=1) == 0] = 0
  mapping[0] = 0
  return mapping


def iou_matrix(confusion):
  """IoU between every learned label and every GT label from a confusion matrix.

  Args:
    confusion: `[K_pred + 1, K_gt + 1]` pixel counts.

  Returns:
    `[K_pred + 1, K_gt + 1]` float64 IoU (0 where the union is empty).
  """
  confusion = np.asarray(confusion, dtype=np.float64)
  union = confusion.sum(axis=1, keepdims=True) + confusion.sum(axis=0, keepdims=True) - confusion
  return np.divide(confusion, union, out=np.zeros_like(confusion), where=union > 0)


def hungarian_mapping(confusion, criterion="iou"):
  """One-to-one mapping of learned foreground parts to GT foreground parts.

  Solves the assignment (scipy `linear_sum_assignment`, maximising) between learned parts 1..K_pred
  and GT parts 1..K_gt on the fit-split IoU matrix (``criterion="iou"``, default) or raw overlap
  counts (``criterion="overlap"``). Learned parts left unmatched (K_pred > K_gt) map to background.

  Args:
    confusion: `[K_pred + 1, K_gt + 1]` pixel counts accumulated over the fit split.
    criterion: "iou" or "overlap".

  Returns:
    `[K_pred + 1]` int64 mapping, ``mapping[0] = 0``, every GT part used at most once.
  """
  confusion = np.asarray(confusion, dtype=np.int64)
  if criterion == "iou":
    score = iou_matrix(confusion)
  elif criterion == "overlap":
    score = confusion.astype(np.float64)
  else:
    raise ValueError(f"criterion must be 'iou' or 'overlap', got {criterion!r}")
  mapping = np.zeros(confusion.shape[0], dtype=np.int64)
  fg_score = score[1:, 1:]
  if fg_score.size:
    rows, cols = optimize.linear_sum_assignment(fg_score, maximize=True)
    mapping[rows + 1] = cols + 1
  return mapping


def map_confusion(confusion, mapping, num_gt_parts):
  """Merges the rows of a confusion matrix through a learned -> GT mapping.

  Args:
    confusion: `[..., K_pred + 1, K_gt + 1]` pixel counts.
    mapping: `[K_pred + 1]` int, learned label -> GT label.
    num_gt_parts: K_gt.

  Returns:
    `[..., K_gt + 1, K_gt + 1]` counts; rows = mapped prediction, columns = GT.
  """
  confusion = np.asarray(confusion, dtype=np.int64)
  mapping = np.asarray(mapping, dtype=np.int64)
  one_hot = np.zeros((mapping.shape[0], num_gt_parts + 1), dtype=np.int64)
  one_hot[np.arange(mapping.shape[0]), mapping] = 1
  return np.einsum("pm,...pg->...mg", one_hot, confusion)


def iou_from_mapped_confusion(mapped):
  """Per-GT-label IoU from a mapped (square) confusion matrix.

  Args:
    mapped: `[..., K_gt + 1, K_gt + 1]` counts (rows = mapped prediction, columns = GT).

  Returns:
    `[..., K_gt + 1]` float64 IoU per GT label (index 0 = background), NaN where the union is empty.
  """
  mapped = np.asarray(mapped, dtype=np.float64)
  inter = np.diagonal(mapped, axis1=-2, axis2=-1)
  union = mapped.sum(axis=-1) + mapped.sum(axis=-2) - inter
  out = np.full(inter.shape, np.nan)
  np.divide(inter, union, out=out, where=union > 0)
  return out


def part_iou(test_confusion, mapping, num_gt_parts, per_image_confusions=None):
  """Part IoU on the test split for a given learned -> GT mapping.

  Args:
    test_confusion: `[K_pred + 1, K_gt + 1]` counts summed over all test pixels.
    mapping: `[K_pred + 1]` learned -> GT mapping (from the fit split).
    num_gt_parts: K_gt.
    per_image_confusions: optional `[N, K_pred + 1, K_gt + 1]` per-image counts for the per-image
      variant.

  Returns:
    dict with
      - ``per_part``: `[K_gt]` dataset-level IoU of GT parts 1..K_gt (NaN: undefined, see module doc),
      - ``mean``: nan-mean of ``per_part`` over GT foreground parts (the headline),
      - ``background``: dataset-level IoU of the background,
      - ``per_part_per_image`` / ``per_image_mean`` (only with `per_image_confusions`): per part,
        the mean over images where the part is present or predicted; and the mean over images of
        each image's mean over its defined parts.
  """
  ious = iou_from_mapped_confusion(map_confusion(test_confusion, mapping, num_gt_parts))
  per_part = ious[1:]
  result = {
    "per_part": per_part,
    "mean": _nanmean(per_part),
    "background": float(ious[0]),
  }
  if per_image_confusions is not None:
    per_image_confusions = np.asarray(per_image_confusions, dtype=np.int64)
    if per_image_confusions.shape[0] == 0:
      result["per_part_per_image"] = np.full(num_gt_parts, np.nan)
      result["per_image_mean"] = float("nan")
    else:
      img_ious = iou_from_mapped_confusion(
        map_confusion(per_image_confusions, mapping, num_gt_parts)
      )[:, 1:]
      result["per_part_per_image"] = _nanmean(img_ious, axis=0)
      result["per_image_mean"] = _nanmean(_nanmean(img_ious, axis=1))
  return result


def _nanmean(values, axis=None):
  """`np.nanmean` without the all-NaN warning (all-NaN slices give NaN)."""
  values = np.asarray(values, dtype=np.float64)
  finite = np.isfinite(values)
  count = finite.sum(axis=axis)
  total = np.where(finite, values, 0.0).sum(axis=axis)
  mean = np.divide(total, count, out=np.full(np.shape(total), np.nan), where=count > 0)
  return float(mean) if np.ndim(mean) == 0 else mean


# ------------------------------------------------------------------------------------------------
# Landmark regression
# ------------------------------------------------------------------------------------------------


def part_centroids(labels, num_parts):
  """Centroid (pixels) of every foreground part of a hard label map.

  Args:
    labels: `[H, W]` int, 0 = background, 1..num_parts = parts.
    num_parts: K.

  Returns:
    `(centroids, present)`: `[K, 2]` float64 (x, y) pixel centroids (x = column, y = row, 0 = centre
    of the first pixel), NaN for parts absent from the image; `[K]` bool presence.
  """
  labels = _as_label_map(labels, "labels")
  if labels.size and labels.max() > num_parts:
    raise DataError(f"labels hold label {labels.max()} but num_parts is {num_parts}")
  width = labels.shape[1]
  flat = labels.ravel()
  ys, xs = np.divmod(np.arange(flat.size, dtype=np.float64), width)
  counts = np.bincount(flat, minlength=num_parts + 1)[1:].astype(np.float64)
  sum_x = np.bincount(flat, weights=xs, minlength=num_parts + 1)[1:]
  sum_y = np.bincount(flat, weights=ys, minlength=num_parts + 1)[1:]
  present = counts > 0
  centroids = np.full((num_parts, 2), np.nan)
  centroids[present, 0] = sum_x[present] / counts[present]
  centroids[present, 1] = sum_y[present] / counts[present]
  return centroids, present


def fill_absent_centroids(centroids, fill):
  """Replaces absent (NaN) centroids with a per-part fill value.

  Args:
    centroids: `[N, K, 2]` pixel centroids, NaN where absent.
    fill: `[K, 2]` fill values.

  Returns:
    `[N, K, 2]` float64 without NaN.
  """
  centroids = np.asarray(centroids, dtype=np.float64)
  return np.where(np.isnan(centroids), np.asarray(fill, dtype=np.float64)[None], centroids)


def centroid_fill_values(fit_centroids, frame_size):
  """The documented fill for absent parts: mean fit-split centroid, else the image centre.

  Args:
    fit_centroids: `[N, K, 2]` fit-split centroids, NaN where absent.
    frame_size: `(H, W)` of the label maps.

  Returns:
    `[K, 2]` (x, y) per part.
  """
  fit_centroids = np.asarray(fit_centroids, dtype=np.float64)
  height, width = frame_size
  centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
  if fit_centroids.shape[0] == 0:
    return np.broadcast_to(centre, fit_centroids.shape[1:]).copy()
  mean = _nanmean(fit_centroids, axis=0)
  return np.where(np.isnan(mean), centre[None], mean)


def _valid_landmarks(landmarks, visible):
  """`[N, L]` mask of usable GT landmarks (visible and finite)."""
  landmarks = np.asarray(landmarks, dtype=np.float64)
  valid = np.all(np.isfinite(landmarks), axis=-1)
  if visible is not None:
    valid &= np.asarray(visible, dtype=bool)
  return valid


def fit_landmark_regressor(features, landmarks, visible=None):
  """Ordinary least squares with intercept, one fit per landmark coordinate.

  Args:
    features: `[N, F]` float (F may be 0: intercept only = the fit-split mean).
    landmarks: `[N, L, 2]` float (x, y) pixels.
    visible: `[N, L]` bool or None; invisible or non-finite landmarks are skipped.

  Returns:
    `[F + 1, L, 2]` float64 weights (last row = intercept); NaN for coordinates without any usable
    fit sample.
  """
  features = np.asarray(features, dtype=np.float64)
  landmarks = np.asarray(landmarks, dtype=np.float64)
  if features.ndim != 2 or landmarks.ndim != 3 or features.shape[0] != landmarks.shape[0]:
    raise DataError(
      f"features {features.shape} must be [N, F] and landmarks {landmarks.shape} [N, L, 2]"
    )
  valid = _valid_landmarks(landmarks, visible)
  design = np.concatenate([features, np.ones((features.shape[0], 1))], axis=1)
  num_landmarks = landmarks.shape[1]
  weights = np.full((design.shape[1], num_landmarks, 2), np.nan)
  for lm in range(num_landmarks):
    rows = valid[:, lm]
    if not np.any(rows):
      continue
    # Both coordinates share the rows, so one lstsq call solves x and y.
    sol, *_ = np.linalg.lstsq(design[rows], landmarks[rows, lm, :], rcond=None)
    weights[:, lm, :] = sol
  return weights


def predict_landmarks(weights, features):
  """Applies `fit_landmark_regressor` weights.

  Args:
    weights: `[F + 1, L, 2]`.
    features: `[N, F]`.

  Returns:
    `[N, L, 2]` predicted (x, y) pixels.
  """
  features = np.asarray(features, dtype=np.float64)
  design = np.concatenate([features, np.ones((features.shape[0], 1))], axis=1)
  return np.einsum("nf,flc->nlc", design, weights)


def landmark_errors(predicted, landmarks, visible, frame_size):
  """Mean absolute error per landmark coordinate and its summaries.

  Args:
    predicted: `[N, L, 2]` predicted (x, y) pixels.
    landmarks: `[N, L, 2]` GT (x, y) pixels.
    visible: `[N, L]` bool or None.
    frame_size: `(H, W)` of the frames the pixels refer to.

  Returns:
    dict with ``per_coordinate_px`` / ``per_coordinate_256`` `[L, 2]` MAE (NaN if a coordinate has
    no usable test sample or no fit), ``sum_256`` / ``mean_256`` / ``sum_px`` / ``mean_px`` over the
    finite coordinates, and ``num_coordinates`` (how many entered the sum). ``sum_256`` is the
    paper's number.
  """
  predicted = np.asarray(predicted, dtype=np.float64)
  landmarks = np.asarray(landmarks, dtype=np.float64)
  valid = _valid_landmarks(landmarks, visible)
  abs_err = np.abs(predicted - np.where(np.isfinite(landmarks), landmarks, 0.0))
  abs_err = np.where(valid[..., None], abs_err, np.nan)
  per_coord = (
    _nanmean(abs_err, axis=0) if abs_err.shape[0] else np.full(landmarks.shape[1:], np.nan)
  )
  per_coord = np.asarray(per_coord, dtype=np.float64).reshape(landmarks.shape[1:])
  height, width = frame_size
  scale = np.array([REFERENCE_FRAME_SIZE / width, REFERENCE_FRAME_SIZE / height])
  per_coord_256 = per_coord * scale
  finite = np.isfinite(per_coord)
  num = int(finite.sum())
  return {
    "per_coordinate_px": per_coord,
    "per_coordinate_256": per_coord_256,
    "sum_px": float(per_coord[finite].sum()) if num else float("nan"),
    "mean_px": float(per_coord[finite].mean()) if num else float("nan"),
    "sum_256": float(per_coord_256[finite].sum()) if num else float("nan"),
    "mean_256": float(per_coord_256[finite].mean()) if num else float("nan"),
    "num_coordinates": num,
  }


def landmark_regression(
  fit_features, fit_landmarks, fit_visible, test_features, test_landmarks, test_visible, frame_size
):
  """The landmark protocol of DESIGN.md §7 on precomputed features.

  Args:
    fit_features: `[N_fit, F]` float (no NaN; fill absent parts first).
    fit_landmarks: `[N_fit, L, 2]` (x, y) pixels.
    fit_visible: `[N_fit, L]` bool or None.
    test_features: `[N_test, F]`.
    test_landmarks: `[N_test, L, 2]`.
    test_visible: `[N_test, L]` bool or None.
    frame_size: `(H, W)` of the frames.

  Returns:
    The `landmark_errors` dict.
  """
  weights = fit_landmark_regressor(fit_features, fit_landmarks, fit_visible)
  predicted = predict_landmarks(weights, test_features)
  return landmark_errors(predicted, test_landmarks, test_visible, frame_size)


def centroid_features(centroids, fill):
  """Flattens per-image part centroids into regression features.

  Args:
    centroids: `[N, K, 2]` pixel centroids, NaN where a part is absent.
    fill: `[K, 2]` fill for absent parts (see `centroid_fill_values`).

  Returns:
    `[N, 2K]` features ``(x_1, y_1, x_2, y_2, ...)``.
  """
  filled = fill_absent_centroids(centroids, fill)
  return filled.reshape(filled.shape[0], -1)


def centroid_landmark_regression(
  fit_centroids,
  fit_landmarks,
  fit_visible,
  test_centroids,
  test_landmarks,
  test_visible,
  frame_size,
):
  """The landmark protocol of DESIGN.md §7 from part centroids (absent parts filled first).

  Args:
    fit_centroids: `[N_fit, K, 2]` pixel centroids, NaN where a part is absent.
    fit_landmarks, fit_visible, test_landmarks, test_visible, frame_size: as
      `landmark_regression`.
    test_centroids: `[N_test, K, 2]`, NaN where absent.

  Returns:
    The `landmark_errors` dict. Absent parts take `centroid_fill_values` of the fit split.
  """
  fill = centroid_fill_values(fit_centroids, frame_size)
  return landmark_regression(
    centroid_features(fit_centroids, fill),
    fit_landmarks,
    fit_visible,
    centroid_features(test_centroids, fill),
    test_landmarks,
    test_visible,
    frame_size,
  )
