r"""Landmark and part IoU oracles: what the protocols give segmentations no model has to learn.

  python benchmarks/landmark_oracles.py [--data_dir=data/humanoid] [--image_size=128]
      [--kmeans=4,6,8,10,12] [--fit_frames_per_video=0] [--json_out=PATH]

Why: rung C of the quality ladder asks the model's parts to beat position k-means on the
landmark MAE (DESIGN.md §7: each part's centroid, one linear regression per landmark
coordinate fitted on the train split, MAE summed over coordinates at 256 px on the test split),
and rung D asks for a part IoU (majority) of 0.55. Before tuning a model against those bars, this
script measures what the protocols give, from the ground truth alone (no model, no training), on
the same frames the evaluation uses (`copart_tf.data.pipeline.iterate_eval_frames`;
``--fit_frames_per_video=0`` = every train frame, as configs/demo.cfg's evaluation). Each
segmentation row also gets the evaluator's part IoU (DESIGN.md §7: each part mapped to the
labelled part it overlaps most on the train split, majority or one-to-one; IoU on the test
split, mean over the labelled parts):

- ``mean landmark``: no features (the fit split's mean landmark), the floor;
- ``GT parts``: the centroids of the labelled parts, the ceiling of a segmentation that finds
  every part with its identity;
- ``GT parts, left/right merged``: every ``left_X`` / ``right_X`` pair of part names as one
  part (a model whose parts hold both legs, both shins, ...);
- ``GT parts, left/right by image side``: the pair's two parts relabelled by the x of their
  centroids in every frame (a model that tells the two limbs apart by where they are in the
  image, not which they are): the best any segmentation blind to anatomical left and right
  can score;
- ``position k-means K``: the ladder's baseline (`copart_tf.evaluation.baselines`) on the
  ground-truth foreground, for each K of ``--kmeans`` (the ladder runs it on the model's
  foreground with the model's K).

A table on stdout (MAE sum @256, lower is better; part IoU, higher is better); ``--json_out``
also keeps the per-coordinate MAE of every row. Measured on data/humanoid (docs/EXPERIMENTS.md
sections 18 and 20).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from copart_tf import cli_env  # noqa: E402, F401 (TensorFlow's environment, before TF loads)
from copart_tf.data import pipeline  # noqa: E402
from copart_tf.errors import DataError  # noqa: E402
from copart_tf.evaluation import baselines, metrics  # noqa: E402

SPLITS = ("train", "test")


def left_right_pairs(part_names):
  """`[(left_label, right_label)]` for every pair of names ``left_X`` / ``right_X``.

  Args:
    part_names: K+1 names, [0] = background.

  Returns:
    Label pairs in the order of the left names (empty when the names have no such pairs).
  """
  index = {name: i for i, name in enumerate(part_names)}
  pairs = []
  for i, name in enumerate(part_names):
    if name.startswith("left_") and "right_" + name[len("left_") :] in index:
      pairs.append((i, index["right_" + name[len("left_") :]]))
  return pairs


def merge_pairs(parts, pairs):
  """Label maps with every right label of `pairs` relabelled as its left one."""
  merged = np.array(parts, copy=True)
  for left, right in pairs:
    merged[merged == right] = left
  return merged


def label_pairs_by_x(parts, pairs, num_parts):
  """`[N, H, W]` label maps with each pair's two labels swapped where the left one lies right.

  In every frame, of a pair's two parts the one whose centroid has the smaller x gets the
  pair's first (left) label; a frame missing one of the two parts keeps its labels.

  Args:
    parts: `[N, H, W]` labelled parts, 0 = background, 1..num_parts.
    pairs: `left_right_pairs` (disjoint label pairs).
    num_parts: K, the largest label.
  """
  parts = np.asarray(parts)
  centroids = centroids_of(parts, num_parts)
  out = np.array(parts, copy=True)
  for left, right in pairs:
    swap = centroids[:, left - 1, 0] > centroids[:, right - 1, 0]  # NaN compares False
    frames = out[swap]  # earlier pairs already swapped in these frames
    out[swap] = np.where(frames == left, right, np.where(frames == right, left, frames))
  return out


def part_ious(fit_labels, fit_parts, test_labels, test_parts, num_pred, num_gt):
  """The evaluator's part IoU of a segmentation: `{"majority": mean, "hungarian": mean}`.

  Args:
    fit_labels, test_labels: `[N, H, W]` label maps of the segmentation (0 = background).
    fit_parts, test_parts: `[N, H, W]` labelled parts of the same frames.
    num_pred, num_gt: number of segmentation / labelled parts.
  """

  def confusion(labels, parts):
    return sum(
      metrics.confusion_counts(a, b, num_pred, num_gt) for a, b in zip(labels, parts, strict=True)
    )

  fit, test = confusion(fit_labels, fit_parts), confusion(test_labels, test_parts)
  mappings = {
    "majority": metrics.majority_mapping(fit),
    "hungarian": metrics.hungarian_mapping(fit),
  }
  return {name: metrics.part_iou(test, m, num_gt)["mean"] for name, m in mappings.items()}


def load_split(data_dir, split, image_size, max_frames_per_video):
  """Part maps, landmarks and visibility of every labelled frame of a split, and the part names."""
  parts, landmarks, visible, names = [], [], [], None
  for frame in pipeline.iterate_eval_frames(data_dir, split, image_size, max_frames_per_video):
    if frame["parts"] is None or frame["landmarks"] is None:
      continue
    parts.append(frame["parts"])
    landmarks.append(frame["landmarks"])
    visible.append(frame["visible"])
    names = names or frame.get("part_names")
  if not parts:
    raise DataError(f"{data_dir}: no {split} frame has both part labels and landmarks")
  return {
    "parts": np.stack(parts),
    "landmarks": np.stack(landmarks),
    "visible": np.stack(visible),
    "names": names,
  }


def centroids_of(label_maps, num_parts):
  """`[N, K, 2]` centroids (NaN where absent) of `[N, H, W]` label maps."""
  return np.stack([metrics.part_centroids(labels, num_parts)[0] for labels in label_maps])


def regression_mae(fit_centroids, test_centroids, data, frame_size):
  """The evaluator's landmark protocol on two splits' centroids; returns `landmark_errors`."""
  return metrics.centroid_landmark_regression(
    fit_centroids,
    data["train"]["landmarks"],
    data["train"]["visible"],
    test_centroids,
    data["test"]["landmarks"],
    data["test"]["visible"],
    frame_size,
  )


def run(args):
  """Measures every row; returns the results dict."""
  per_video = args.fit_frames_per_video or None
  started = time.time()
  data = {
    "train": load_split(args.data_dir, "train", args.image_size, per_video),
    "test": load_split(args.data_dir, "test", args.image_size, None),
  }
  frame_size = data["test"]["parts"].shape[1:]
  names = data["test"]["names"] or data["train"]["names"]
  num_gt = int(max(data[s]["parts"].max() for s in SPLITS))
  if names is None:
    names = ["background"] + [f"part_{i}" for i in range(1, num_gt + 1)]
  pairs = left_right_pairs(names)
  rows = {}
  rows["mean landmark"] = baselines.mean_landmark_baseline(
    data["train"]["landmarks"],
    data["train"]["visible"],
    data["test"]["landmarks"],
    data["test"]["visible"],
    frame_size,
  )
  ious = {}

  def segmentation_row(name, labels, num_parts, centroids=None):
    """One row from a segmentation's label maps (per split); `centroids` overrides theirs."""
    if centroids is None:
      centroids = {s: centroids_of(labels[s], num_parts) for s in SPLITS}
    rows[name] = regression_mae(centroids["train"], centroids["test"], data, frame_size)
    ious[name] = part_ious(
      labels["train"],
      data["train"]["parts"],
      labels["test"],
      data["test"]["parts"],
      num_parts,
      num_gt,
    )

  gt_labels = {s: data[s]["parts"] for s in SPLITS}
  segmentation_row("GT parts", gt_labels, num_gt)
  if pairs:
    rights = {right - 1 for _, right in pairs}
    keep = [k for k in range(num_gt) if k not in rights]
    merged = {s: merge_pairs(data[s]["parts"], pairs) for s in SPLITS}
    segmentation_row(
      "GT parts, left/right merged",
      merged,
      num_gt,
      {s: centroids_of(merged[s], num_gt)[:, keep] for s in SPLITS},
    )
    by_side = {s: label_pairs_by_x(data[s]["parts"], pairs, num_gt) for s in SPLITS}
    segmentation_row("GT parts, left/right by image side", by_side, num_gt)
  for k in args.kmeans:
    km = {
      s: np.stack([baselines.position_kmeans_labels(p, k) for p in data[s]["parts"]])
      for s in SPLITS
    }
    segmentation_row(f"position k-means {k}", km, k)
  return {
    "data_dir": args.data_dir,
    "image_size": args.image_size,
    "num_fit_frames": int(data["train"]["parts"].shape[0]),
    "num_test_frames": int(data["test"]["parts"].shape[0]),
    "part_names": list(names),
    "left_right_pairs": [[names[a], names[b]] for a, b in pairs],
    "seconds": time.time() - started,
    "rows": {
      name: {
        "sum_256": float(row["sum_256"]),
        "per_coordinate_256": np.asarray(row["per_coordinate_256"]).tolist(),
        "part_iou_majority": ious.get(name, {}).get("majority"),
        "part_iou_hungarian": ious.get(name, {}).get("hungarian"),
      }
      for name, row in rows.items()
    },
  }


def format_table(results):
  width = max(len(name) for name in results["rows"])
  header = f"{'features':<{width}} | landmark MAE (sum @256) | part IoU majority / Hungarian"
  lines = [header, "-" * len(header)]

  def iou(value):
    return "-" if value is None else f"{value:.3f}"

  for name, row in results["rows"].items():
    lines.append(
      f"{name:<{width}} | {row['sum_256']:23.1f} | "
      f"{iou(row['part_iou_majority'])} / {iou(row['part_iou_hungarian'])}"
    )
  lines.append(
    f"{results['data_dir']}: {results['num_fit_frames']} fit + {results['num_test_frames']} test "
    f"frames at {results['image_size']} px, {results['seconds']:.0f} s"
  )
  return "\n".join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=os.path.join(ROOT, "data", "humanoid"))
  parser.add_argument("--image_size", type=int, default=128, help="Frames are resized to this.")
  parser.add_argument(
    "--kmeans", default="4,6,8,10,12", help="Comma-separated K of the position k-means rows."
  )
  parser.add_argument(
    "--fit_frames_per_video",
    type=int,
    default=0,
    help="Train frames per video that fit the regression (0 = all, as configs/demo.cfg).",
  )
  parser.add_argument("--json_out", default=None)
  args = parser.parse_args(argv)
  try:
    args.kmeans = [int(k) for k in args.kmeans.split(",") if k.strip()]
  except ValueError:
    parser.error(f"--kmeans={args.kmeans!r}: expected comma-separated integers")
  if any(k < 1 for k in args.kmeans):
    parser.error(f"--kmeans={args.kmeans}: every K must be >= 1")
  if not os.path.isdir(args.data_dir):
    parser.error(f"--data_dir={args.data_dir}: no such directory (generate it with make demo)")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    results = run(args)
  except DataError as error:
    sys.exit(f"error: {error}")
  print(format_table(results))
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
