"""Evaluates a segmentation function on a dataset with ground truth (the glue between the data
pipeline, a model and the `Evaluator`)."""

import itertools

import numpy as np
from absl import logging

from copart_tf.data import pipeline
from copart_tf.evaluation import evaluator as evaluator_lib
from copart_tf.evaluation import report as report_lib


def _batched(iterable, size):
  iterator = iter(iterable)
  while True:
    chunk = list(itertools.islice(iterator, size))
    if not chunk:
      return
    yield chunk


def predicted_records(predict_fn, frames, batch_size=16):
  """Runs `predict_fn` over frame dicts from `iterate_eval_frames`, yielding evaluator records.

  Args:
    predict_fn: uint8 images `[N, S, S, 3]` -> int part labels `[N, S, S]` (0 = background).
    frames: iterable of `iterate_eval_frames` dicts.
    batch_size: frames per `predict_fn` call.
  """
  for chunk in _batched(frames, batch_size):
    images = np.stack([f["image"] for f in chunk])
    labels = np.asarray(predict_fn(images))
    for frame, pred in zip(chunk, labels, strict=True):
      yield {
        "pred_labels": pred.astype(np.int32),
        "gt_parts": frame["parts"],
        "landmarks": frame["landmarks"],
        "visible": frame["visible"],
        "part_names": frame.get("part_names"),
        "image": frame["image"],
        "video": frame["video"],
        "frame_index": frame["frame_index"],
      }


def evaluate_segmenter(
  predict_fn,
  data_dir,
  image_size,
  num_parts,
  fit_split="train",
  test_split="test",
  max_fit_frames_per_video=16,
  max_test_frames_per_video=None,
  report_dir=None,
  batch_size=16,
):
  """Evaluates part segmentation against ground truth (DESIGN.md §7).

  The fit split maps learned parts to ground-truth parts ("label once") and fits the landmark
  regressor; the metrics are measured on every frame of the test split.

  Args:
    predict_fn: uint8 `[N, S, S, 3]` -> int labels `[N, S, S]`.
    data_dir: dataset root with ground truth under `labels/` (any layout of
      `copart_tf.data.labels`); metrics the labels cannot give are skipped with a warning.
    image_size: S.
    num_parts: K of the model.
    fit_split, test_split: split names.
    max_fit_frames_per_video: frames per fit video (None = all).
    max_test_frames_per_video: frames per test video (None = all).
    report_dir: where metrics.json / report.md / PNGs go (None = no files).
    batch_size: frames per prediction call.

  Returns:
    The results dict of `Evaluator.result()`; `results["table"]` holds the printable table.
  """
  fit = pipeline.iterate_eval_frames(data_dir, fit_split, image_size, max_fit_frames_per_video)
  test = pipeline.iterate_eval_frames(data_dir, test_split, image_size, max_test_frames_per_video)
  evaluator = evaluator_lib.Evaluator(num_parts)  # GT part names come with the records
  logging.info("evaluation: fitting the part mapping on %s", fit_split)
  evaluator.add_frames(predicted_records(predict_fn, fit, batch_size), evaluator_lib.FIT)
  logging.info("evaluation: measuring on %s", test_split)
  evaluator.add_frames(predicted_records(predict_fn, test, batch_size), evaluator_lib.TEST)
  results = evaluator.result()
  for reason in results["skipped"].values():
    logging.warning("evaluation of %s: %s", data_dir, reason)
  if report_dir is not None:
    report_lib.write_report(results, report_dir, samples=evaluator.samples)
  results["table"] = report_lib.format_table(results)
  return results


def headline(results):
  """The numbers the quality bar is about, as a flat dict (skipped metrics are left out)."""
  model = results["methods"]["model"]
  kmeans = results["methods"].get("position_kmeans", {})
  out = {}
  if model.get("foreground_iou") is not None:
    out["foreground_iou"] = model["foreground_iou"]
  if model.get("part_iou"):
    out["part_iou_majority"] = model["part_iou"]["majority"]["mean"]
    out["part_iou_hungarian"] = model["part_iou"]["hungarian"]["mean"]
  if model.get("landmarks"):
    out["landmark_mae_sum_256"] = model["landmarks"]["sum_256"]
  if kmeans:
    if kmeans.get("part_iou"):
      out["kmeans_part_iou_majority"] = kmeans["part_iou"]["majority"]["mean"]
    if kmeans.get("landmarks"):
      out["kmeans_landmark_mae_sum_256"] = kmeans["landmarks"]["sum_256"]
  mean_lm = results["methods"].get("mean_landmark", {})
  if mean_lm.get("landmarks"):
    out["mean_landmark_mae_sum_256"] = mean_lm["landmarks"]["sum_256"]
  return out
