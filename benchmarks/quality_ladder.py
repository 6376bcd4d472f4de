r"""Quality ladder: trains every rung from scratch, evaluates it on its test split, prints one table.

  python benchmarks/quality_ladder.py [--rungs=A,B,C,D] [--work_dir=/tmp/ladder_runs]
      [--train_steps=N] [--json_out=PATH] [--pair_gap=8] [--config=A=path/to.cfg ...]
      [--train_flag=--name=value ...] [--skip_export] [--train_timeout=SECONDS]

Rungs (`RUNGS`): A sprites, B figure2d, C demo (synthetic humanoid, 128 px), D humanoid; each is
an absl flagfile for ``python -m copart_tf.train``. A rung whose flagfile does not exist is
reported as "missing config". For every other rung:

1. Data: when the config's ``--data_dir`` is missing and it sets ``--synthesize_if_missing``, the
   dataset is generated first by the trainer's own `ensure_data` in a subprocess of its own, timed
   separately (``data_seconds``), so that the training time does not include it.
2. Training, from scratch (``<work_dir>/<rung>/model`` and ``export`` are deleted first)::

     python -m copart_tf.train --flagfile=<cfg> --model_dir=<work_dir>/<rung>/model
         --export_dir=<work_dir>/<rung>/export --evaluate_at_end=false [--train_steps=N]
         [--train_flag values]

   run from the repository root (so the config's relative ``--data_dir`` is kept), output in
   ``<work_dir>/<rung>/train.log``. Later flags override the flagfile's. ``wall time (train)`` is
   the wall clock of this process (TensorFlow start-up, training, checkpoints, the export). The
   end-of-run evaluation is switched off because step 3 does it.
3. Evaluation of the latest checkpoint (`copart_tf.inference.Segmenter.load`, i.e.
   `copart_tf.model.loading.load_from_model_dir`) with `copart_tf.evaluation.run.
   evaluate_segmenter`, as ``python -m copart_tf.evaluate`` does (fit split ``train``, the run's
   ``--eval_fit_frames_per_video`` / ``--eval_test_frames_per_video``), report in
   ``<work_dir>/<rung>/eval``: foreground IoU, part IoU (majority and Hungarian mapping), landmark
   MAE (sum over coordinates, pixels of a 256x256 frame) and the position k-means baseline.
4. Reconstruction on test pairs: for every test video, source = frame 0 and targets = frames
   ``g, 2g, 3g, ... < T`` (g = ``--pair_gap``, default 8; the last frame if the video has at most g
   frames). ``model L1`` = mean |target reconstruction - target| of `CoPartModel.forward_pair`
   (identity warp affines), ``copy-source L1`` = mean |target - source|; pixels and channels in
   [0, 1] at the model's resolution, averaged over pixels, then over pairs.
5. Rung A only, ``shift err px``: the model's part centres (``centers``, normalised) against the
   true sprite centres (translation column of the side-car ``poses``) on every test frame. Learned
   parts are matched one-to-one to sprites (`scipy.optimize.linear_sum_assignment` on the mean
   centre distance over the test frames where the sprite is visible, ``pose_visible``); the error
   is the mean distance over those visible (frame, matched sprite) observations, in pixels of the
   data's frames (normalised distance x size / 2). The JSON also holds
   ``shift_error_px_per_video``: the same with one matching per test video (localisation alone,
   whether or not a part keeps its sprite across videos).
6. ``<work_dir>/<rung>/overlay.png``: a few test frames: image | learned parts | learned parts
   coloured through the majority mapping | ground truth (parts blended over the frame with
   `copart_tf.training.visualize.overlay_parts` and `copart_tf.evaluation.report` palettes).

Then every criterion of the rung's bar (`BARS`) is PASS or FAIL (FAIL also when the number could
not be measured); a rung that could not run shows ``n/a``. The table goes to stdout, progress to
stderr, and the JSON to ``--json_out`` (default ``<work_dir>/quality_ladder.json``).
"""

import argparse
import itertools
import json
import operator
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from scipy import optimize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

DEFAULT_WORK_DIR = "/tmp/ladder_runs"
DEFAULT_PAIR_GAP = 8
OVERLAY_ROWS = 4

RUNGS = {
  "A": {"config": "configs/sprites.cfg", "dataset": "sprites", "shift_error": True},
  "B": {"config": "configs/figure2d.cfg", "dataset": "figure2d", "shift_error": False},
  "C": {
    "config": "configs/demo.cfg",
    "dataset": "humanoid (pybullet, 128 px)",
    "shift_error": False,
  },
  "D": {"config": "configs/humanoid.cfg", "dataset": "humanoid_bench", "shift_error": False},
}

# The bars of the issue. A criterion compares `metric` with a number (`value`) or with another
# metric of the same rung (`reference`).
# Both "beats position k-means" criteria (rungs B and C).
_BEATS_KMEANS = [
  {
    "label": "part IoU > k-means",
    "metric": "part_iou_majority",
    "op": ">",
    "reference": "kmeans_part_iou_majority",
  },
  {
    "label": "landmark MAE < k-means",
    "metric": "landmark_mae",
    "op": "<",
    "reference": "kmeans_landmark_mae",
  },
]

BARS = {
  "A": [
    {"label": "fg IoU >= 0.95", "metric": "fg_iou", "op": ">=", "value": 0.95},
    {"label": "part IoU (H) >= 0.85", "metric": "part_iou_hungarian", "op": ">=", "value": 0.85},
    {"label": "shift <= 2 px", "metric": "shift_error_px", "op": "<=", "value": 2.0},
    {"label": "time <= 5 min", "metric": "train_seconds", "op": "<=", "value": 5 * 60.0},
  ],
  "B": [
    {"label": "fg IoU >= 0.85", "metric": "fg_iou", "op": ">=", "value": 0.85},
    {"label": "part IoU (maj) >= 0.55", "metric": "part_iou_majority", "op": ">=", "value": 0.55},
    *_BEATS_KMEANS,
    {"label": "time <= 15 min", "metric": "train_seconds", "op": "<=", "value": 15 * 60.0},
  ],
  "C": [
    {"label": "fg IoU >= 0.85", "metric": "fg_iou", "op": ">=", "value": 0.85},
    *_BEATS_KMEANS,
    {"label": "time <= 20 min", "metric": "train_seconds", "op": "<=", "value": 20 * 60.0},
  ],
  "D": [
    {"label": "fg IoU >= 0.90", "metric": "fg_iou", "op": ">=", "value": 0.90},
    {"label": "part IoU (maj) >= 0.55", "metric": "part_iou_majority", "op": ">=", "value": 0.55},
    {"label": "time <= 2 h", "metric": "train_seconds", "op": "<=", "value": 2 * 3600.0},
  ],
}

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
PASS, FAIL, NOT_RUN = "PASS", "FAIL", "n/a"

# (key, header) of the table; the keys are those of a rung's JSON entry or of its "metrics".
COLUMNS = (
  ("rung", "rung"),
  ("config", "config"),
  ("steps", "steps"),
  ("train_seconds", "wall time (train)"),
  ("fg_iou", "fg IoU"),
  ("part_iou_majority", "part IoU (majority)"),
  ("part_iou_hungarian", "part IoU (Hungarian)"),
  ("landmark_mae", "landmark MAE"),
  ("kmeans_part_iou_majority", "k-means part IoU (majority)"),
  ("kmeans_landmark_mae", "k-means landmark MAE"),
  ("model_l1", "model L1"),
  ("copy_source_l1", "copy-source L1"),
  ("shift_error_px", "shift err px"),
  ("bar", "bar"),
  ("verdict", "verdict"),
)
METRIC_KEYS = (
  "train_seconds",
  "fg_iou",
  "part_iou_majority",
  "part_iou_hungarian",
  "landmark_mae",
  "kmeans_part_iou_majority",
  "kmeans_landmark_mae",
  "model_l1",
  "copy_source_l1",
  "shift_error_px",
)

DEFINITIONS = {
  "train_seconds": "wall clock of the `python -m copart_tf.train` process (start-up, training, "
  "checkpoints, export; data generation excluded, see data_seconds)",
  "fg_iou": "mean over test frames of the foreground IoU (copart_tf.evaluation)",
  "part_iou_majority": "part IoU, learned parts -> GT parts by majority on the fit split",
  "part_iou_hungarian": "part IoU, one-to-one (Hungarian) mapping on the fit split",
  "landmark_mae": "landmark MAE sum over coordinates, pixels of a 256x256 frame (sum_256)",
  "kmeans_part_iou_majority": "part IoU (majority) of the position k-means baseline",
  "kmeans_landmark_mae": "landmark MAE sum_256 of the position k-means baseline",
  "model_l1": "mean |forward_pair target_reconstruction - target| on test pairs, [0, 1] pixels",
  "copy_source_l1": "mean |target - source| on the same pairs",
  "shift_error_px": "rung A: mean distance between matched learned part centres and true sprite "
  "centres over visible (frame, sprite) observations, pixels of the data's frames",
}


def log(message):
  print(f"[quality_ladder] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Bars, shift error, table (NumPy only)
# ------------------------------------------------------------------------------------------------


def evaluate_bar(rung, metrics):
  """PASS / FAIL of every criterion of `BARS[rung]`.

  Args:
    rung: "A".."D".
    metrics: dict metric key -> number or None (see `METRIC_KEYS`).

  Returns:
    list of dicts ``{"criterion", "metric", "op", "value", "threshold" or "reference" and
    "reference_value", "verdict"}``; a criterion whose numbers are missing (None or NaN) FAILs.
  """
  out = []
  for criterion in BARS[rung]:
    value = _number(metrics.get(criterion["metric"]))
    entry = {"criterion": criterion["label"], "metric": criterion["metric"], "op": criterion["op"]}
    if "reference" in criterion:
      bound = _number(metrics.get(criterion["reference"]))
      entry["reference"] = criterion["reference"]
      entry["reference_value"] = bound
    else:
      bound = float(criterion["value"])
      entry["threshold"] = bound
    entry["value"] = value
    ok = value is not None and bound is not None and OPS[criterion["op"]](value, bound)
    entry["verdict"] = PASS if ok else FAIL
    out.append(entry)
  return out


def not_run_bar(rung):
  """The bar of a rung that could not be evaluated: every criterion ``n/a``."""
  return [
    {
      "criterion": c["label"],
      "metric": c["metric"],
      "op": c["op"],
      "value": None,
      "verdict": NOT_RUN,
    }
    for c in BARS[rung]
  ]


def overall_verdict(bar):
  verdicts = {c["verdict"] for c in bar}
  if verdicts == {PASS}:
    return PASS
  return FAIL if FAIL in verdicts else NOT_RUN


def _number(value):
  if value is None:
    return None
  value = float(value)
  return value if np.isfinite(value) else None


def _match_shift(dist, visible):
  """One-to-one matching of learned parts to true parts on `dist` `[N, K, P]` (pixels).

  Returns:
    (rows, cols): matched learned part indices and true part indices (true parts never visible
    are left out; with more visible true parts than learned ones some stay unmatched).
  """
  counts = visible.sum(axis=0)  # [P]
  seen = np.flatnonzero(counts > 0)
  if seen.size == 0:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  weights = visible[:, None, seen].astype(np.float64)  # [N, 1, P']
  cost = (dist[:, :, seen] * weights).sum(axis=0) / counts[seen][None]  # [K, P'] mean distance
  rows, cols = optimize.linear_sum_assignment(cost)
  return rows.astype(np.int64), seen[cols].astype(np.int64)


def shift_error(pred_centers, true_centers, visible, frame_size, groups=None):
  """Distance between learned part centres and true part centres after a one-to-one matching.

  Args:
    pred_centers: `[N, K, 2]` predicted (x, y), normalised coordinates (`copart_tf.ops.grid`).
    true_centers: `[N, P, 2]` true (x, y), normalised (e.g. ``poses[..., 2]``).
    visible: `[N, P]` bool, which true parts count in each frame.
    frame_size: (H, W) of the data's frames, or `[N, 2]` per frame: distances are converted to
      pixels with x * W / 2 and y * H / 2.
    groups: optional `[N]` ids (e.g. video names): one matching per group instead of one over all
      frames.

  Returns:
    dict with ``error_px`` (mean distance over the visible (frame, matched true part)
    observations; None when there are none), ``num_observations``, ``num_unmatched_observations``
    (visible observations of true parts left without a learned part), and for a single matching
    ``assignment`` (true part index -> learned part index) and ``per_part_px`` (true part index ->
    mean distance).
  """
  pred = np.asarray(pred_centers, np.float64)
  true = np.asarray(true_centers, np.float64)
  visible = np.asarray(visible, bool)
  if pred.ndim != 3 or true.ndim != 3 or pred.shape[0] != true.shape[0] or pred.shape[2] != 2:
    raise ValueError(f"pred_centers {pred.shape} and true_centers {true.shape}: [N, K|P, 2]")
  if visible.shape != true.shape[:2]:
    raise ValueError(f"visible {visible.shape} must be [N, P] = {true.shape[:2]}")
  size = np.asarray(frame_size, np.float64)
  size = np.broadcast_to(size, (pred.shape[0], 2))  # (H, W) per frame
  half = np.stack([size[:, 1], size[:, 0]], axis=-1) / 2.0  # (W/2, H/2): x, y scales
  diff = (pred[:, :, None, :] - true[:, None, :, :]) * half[:, None, None, :]
  dist = np.linalg.norm(diff, axis=-1)  # [N, K, P] pixels
  visible = visible & np.all(np.isfinite(true), axis=-1)
  if groups is None:
    group_ids = np.zeros(pred.shape[0], np.int64)
  else:
    _, group_ids = np.unique(np.asarray(groups), return_inverse=True)
  total, count, unmatched = 0.0, 0, 0
  out = {}
  for g in np.unique(group_ids):
    sel = group_ids == g
    rows, cols = _match_shift(dist[sel], visible[sel])
    matched = np.zeros(true.shape[1], bool)
    matched[cols] = True
    for k, p in zip(rows, cols, strict=True):
      d = dist[sel][:, k, p][visible[sel][:, p]]
      total += float(d.sum())
      count += int(d.size)
      if groups is None:
        out.setdefault("assignment", {})[int(p)] = int(k)
        out.setdefault("per_part_px", {})[int(p)] = float(d.mean())
    unmatched += int(visible[sel][:, ~matched].sum())
  out["error_px"] = total / count if count else None
  out["num_observations"] = count
  out["num_unmatched_observations"] = unmatched
  return out


def pair_indices(num_frames, gap):
  """(source, target) frame indices of one test video: (0, g), (0, 2g), ... < T, else (0, T-1)."""
  targets = list(range(gap, num_frames, gap))
  if not targets and num_frames > 1:
    targets = [num_frames - 1]
  return [(0, t) for t in targets]


def _fmt(key, value):
  if value is None:
    return "-"
  if key == "train_seconds":
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
  if key in ("landmark_mae", "kmeans_landmark_mae"):
    return f"{value:.1f}"
  if key == "shift_error_px":
    return f"{value:.2f}"
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def _bar_cell(bar):
  return "; ".join(f"{c['criterion']} {c['verdict']}" for c in bar)


def table_rows(results):
  """The table's cells: one list of strings per rung (header first)."""
  rows = [[header for _, header in COLUMNS]]
  for rung in results["rungs"]:
    cells = []
    for key, _ in COLUMNS:
      if key == "bar":
        cells.append(_bar_cell(rung["bar"]))
      elif key == "verdict":
        status = rung["status"]
        cells.append(rung["verdict"] if status == "ok" else f"{rung['verdict']} ({status})")
      elif key == "shift_error_px" and not RUNGS[rung["rung"]]["shift_error"]:
        cells.append("n/a")
      elif key in ("rung", "config", "steps"):
        cells.append(_fmt(key, rung.get(key)))
      else:
        cells.append(_fmt(key, rung["metrics"].get(key)))
    rows.append(cells)
  return rows


def text_table(rows):
  """Rows of strings (the first is the header) -> padded lines with a rule under the header."""
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = []
  for j, row in enumerate(rows):
    lines.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if j == 0:
      lines.append("-+-".join("-" * w for w in widths))
  return lines


def format_table(results):
  """Plain-text table (columns `COLUMNS`) and a legend line."""
  lines = text_table(table_rows(results))
  lines.append(
    f"pairs: source = frame 0, targets every {results['pair_gap']} frames; L1 on [0, 1] pixels; "
    "landmark MAE = sum over coordinates @256 px; shift err = rung A, px of the data's frames"
  )
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Flagfiles, data, training (subprocesses)
# ------------------------------------------------------------------------------------------------


def read_flagfile(path, values=None):
  """The flags an absl flagfile sets (later lines win), following nested ``--flagfile=``.

  Only used to find ``--data_dir`` / ``--synthesize_if_missing`` / ``--train_steps`` before
  training; the trainer parses the file itself. Relative paths are taken from the repo root.
  """
  values = {} if values is None else values
  with open(path) as f:
    for raw in f:
      line = raw.strip()
      if not line.startswith("--"):
        continue
      name, value = _parse_flag(line)
      if name == "flagfile":
        read_flagfile(_repo_path(value), values)
      else:
        values[name] = value
  return values


def _parse_flag(text):
  """``--name=value`` -> (name, value); ``--name`` -> (name, "true"); ``--noname`` -> "false"."""
  name, sep, value = text.lstrip("-").partition("=")
  if sep:
    return name, value
  if name.startswith("no"):  # absl's negated boolean (a flag really named no... is not in use)
    return name[2:], "false"
  return name, "true"


def _apply_overrides(values, overrides):
  values = dict(values)
  for flag in overrides:
    name, value = _parse_flag(flag)
    values[name] = value
  return values


def _repo_path(path):
  return path if os.path.isabs(path) else os.path.join(ROOT, path)


def _dataset_present(data_dir):
  """As `copart_tf.training.trainer._dataset_present`."""
  return os.path.isdir(data_dir) and (
    os.path.isdir(os.path.join(data_dir, "train")) or bool(os.listdir(data_dir))
  )


def _child_env():
  path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
  return dict(os.environ, PYTHONPATH=path)


def _run_logged(cmd, log_path, timeout):
  """Runs `cmd` from the repo root, output appended to `log_path`; returns (exit code, seconds).

  The child gets its own process group; on timeout that group (only what we started) is killed
  and the exit code is None.
  """
  with open(log_path, "a") as log_file:
    log_file.write("$ " + " ".join(cmd) + "\n")
    log_file.flush()
    start = time.monotonic()
    proc = subprocess.Popen(
      cmd,
      cwd=ROOT,
      env=_child_env(),
      stdout=log_file,
      stderr=subprocess.STDOUT,
      start_new_session=True,
    )
    try:
      code = proc.wait(timeout=timeout or None)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      code = None
    except BaseException:  # KeyboardInterrupt: do not leave the training behind
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      raise
    return code, time.monotonic() - start


# Generates a missing synthetic dataset exactly as the trainer would (its flags, its ensure_data).
_PREPARE_DATA = """
import sys
from absl import flags
from copart_tf import train
from copart_tf.training import trainer
flags.FLAGS(["prepare_data"] + sys.argv[1:])
trainer.ensure_data(train.config_from_flags())
"""


def _tail(path, lines=15):
  try:
    with open(path) as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


# ------------------------------------------------------------------------------------------------
# Evaluation (TensorFlow, imported lazily)
# ------------------------------------------------------------------------------------------------


def _gt_paths(data_dir, split):
  from copart_tf.data import layout

  entries = layout.scan_split(data_dir, split, on_bad_frame="fail", validate_sample=0)
  return {e.name: layout.ground_truth_path(data_dir, split, e) for e in entries}


def measure_test_split(segmenter, data_dir, pair_gap, with_shift, batch_size=8):
  """Reconstruction L1 on test pairs, (rung A) the shift error, and frames for the overlay."""
  import tensorflow as tf

  from copart_tf.data import ground_truth, pipeline
  from copart_tf.errors import DataError
  from copart_tf.ops import affine

  model = segmenter.model
  size = segmenter.image_size

  @tf.function(reduce_retracing=True)
  def reconstruct(source, target):
    warp = affine.identity([tf.shape(source)[0]])
    return model.forward_pair(source, target, warp)["target_reconstruction"]

  @tf.function(reduce_retracing=True)
  def centers(images):
    return model(images)["centers"]

  gt_paths = _gt_paths(data_dir, "test") if with_shift else {}
  model_l1, copy_l1 = [], []
  shift = {"pred": [], "true": [], "visible": [], "size": [], "video": []}
  overlay = []
  frames = pipeline.iterate_eval_frames(data_dir, "test", size)
  for video, group in itertools.groupby(frames, key=lambda f: f["video"]):
    group = list(group)
    images = np.stack([f["image"] for f in group]).astype(np.float32) / 255.0
    pairs = pair_indices(len(group), pair_gap)
    for start in range(0, len(pairs), batch_size):
      chunk = pairs[start : start + batch_size]
      source = images[[s for s, _ in chunk]]
      target = images[[t for _, t in chunk]]
      rec = reconstruct(tf.constant(source), tf.constant(target)).numpy()
      model_l1 += list(np.abs(rec - target).mean(axis=(1, 2, 3)))
      copy_l1 += list(np.abs(target - source).mean(axis=(1, 2, 3)))
    if len(overlay) < OVERLAY_ROWS:  # frame 0 and the middle frame of the first videos
      overlay.append((group[0], group[len(group) // 2]))
    if with_shift:
      try:
        poses = ground_truth.read_poses(gt_paths[video])
      except DataError as error:  # not a ladder dataset: no shift error, the rest still counts
        log(f"no shift error: {error}")
        with_shift = False
        continue
      n = len(group)
      pred = np.concatenate(
        [centers(tf.constant(images[i : i + batch_size])).numpy() for i in range(0, n, batch_size)]
      )
      shift["pred"].append(pred)
      shift["true"].append(poses["poses"][:n, :, :, 2])
      shift["visible"].append(poses["pose_visible"][:n])
      shift["size"].append(np.array([f["original_shape"] for f in group], np.float64))
      shift["video"] += [video] * n
  out = {
    "model_l1": float(np.mean(model_l1)) if model_l1 else None,
    "copy_source_l1": float(np.mean(copy_l1)) if copy_l1 else None,
    "num_pairs": len(model_l1),
    # The first frames of OVERLAY_ROWS videos, topped up with middle frames.
    "overlay_frames": ([a for a, _ in overlay] + [b for _, b in overlay])[:OVERLAY_ROWS],
  }
  if with_shift and shift["pred"]:  # (every video has poses)
    args = [np.concatenate(shift[k]) for k in ("pred", "true", "visible", "size")]
    out["shift"] = shift_error(*args)
    out["shift_per_video"] = shift_error(*args, groups=np.asarray(shift["video"]))
  return out


def save_overlay(path, frames, labels, mapping, num_parts, num_gt_parts, min_cell=128):
  """Writes image | learned parts | majority-mapped parts | ground truth, one row per frame."""
  from PIL import Image, ImageDraw

  from copart_tf.evaluation import report
  from copart_tf.training import visualize

  learned = report.part_palette(num_parts)
  mapped = report.mapped_palette(mapping, num_gt_parts)
  truth = report.part_palette(num_gt_parts)
  height, width = labels[0].shape
  factor = max(1, int(np.ceil(min_cell / width)))
  cell_w, cell_h = width * factor, height * factor
  titles = ("image", "learned parts", "mapped (majority)", "ground truth")
  pad, header, caption = 4, 18, 14
  canvas = Image.new(
    "RGB",
    (len(titles) * (cell_w + pad) + pad, header + len(frames) * (cell_h + caption + pad)),
    (255, 255, 255),
  )
  draw = ImageDraw.Draw(canvas)
  for c, title in enumerate(titles):
    draw.text((pad + c * (cell_w + pad), 3), title, fill=(0, 0, 0))
  for r, (frame, pred) in enumerate(zip(frames, labels, strict=True)):
    image = frame["image"]
    cells = (
      image,
      visualize.overlay_parts(image, pred, palette=learned),
      visualize.overlay_parts(image, pred, palette=mapped),
      visualize.overlay_parts(image, frame["parts"], palette=truth),
    )
    y = header + r * (cell_h + caption + pad)
    for c, cell in enumerate(cells):
      tile = Image.fromarray(np.ascontiguousarray(cell)).resize((cell_w, cell_h), Image.NEAREST)
      canvas.paste(tile, (pad + c * (cell_w + pad), y))
    text = f"{frame['video']} #{frame['frame_index']}"
    draw.text((pad, y + cell_h + 1), text[:60], fill=(0, 0, 0))
  canvas.save(path)
  return path


def evaluate_rung(model_dir, rung_dir, with_shift, pair_gap):
  """Every metric of one trained rung (see the module docstring). Returns a dict."""
  import keras

  from copart_tf import inference
  from copart_tf.evaluation import run as eval_run
  from copart_tf.model import loading

  run_config = loading.read_run_config(model_dir)
  data_dir = _repo_path(run_config["data_dir"])
  segmenter = inference.Segmenter.load(model_dir)
  log(f"evaluating {model_dir} on {data_dir} (test split)")
  results = eval_run.evaluate_segmenter(
    segmenter,
    data_dir,
    segmenter.image_size,
    segmenter.num_parts,
    max_fit_frames_per_video=run_config.get("eval_fit_frames_per_video", 16) or None,
    max_test_frames_per_video=run_config.get("eval_test_frames_per_video", 0) or None,
    report_dir=os.path.join(rung_dir, "eval"),
  )
  head = eval_run.headline(results)
  log(f"reconstruction on test pairs (gap {pair_gap})" + (", shift error" if with_shift else ""))
  split = measure_test_split(segmenter, data_dir, pair_gap, with_shift)
  metrics = {
    "fg_iou": head.get("foreground_iou"),
    "part_iou_majority": head.get("part_iou_majority"),
    "part_iou_hungarian": head.get("part_iou_hungarian"),
    "landmark_mae": head.get("landmark_mae_sum_256"),
    "kmeans_part_iou_majority": head.get("kmeans_part_iou_majority"),
    "kmeans_landmark_mae": head.get("kmeans_landmark_mae_sum_256"),
    "model_l1": split["model_l1"],
    "copy_source_l1": split["copy_source_l1"],
    "shift_error_px": (split.get("shift") or {}).get("error_px"),
  }
  frames = split["overlay_frames"]
  overlay = None
  if frames:
    labels = segmenter(np.stack([f["image"] for f in frames]))
    overlay = save_overlay(
      os.path.join(rung_dir, "overlay.png"),
      frames,
      list(labels),
      results["methods"]["model"]["part_iou"]["majority"]["mapping"],
      segmenter.num_parts,
      results["num_gt_parts"],
    )
  details = {
    "data_dir": data_dir,
    "num_fit_frames": results["num_fit_frames"],
    "num_test_frames": results["num_test_frames"],
    "num_test_pairs": split["num_pairs"],
    "mean_landmark_mae": head.get("mean_landmark_mae_sum_256"),
    "eval_report": os.path.join(rung_dir, "eval", "report.md"),
    "overlay": overlay,
  }
  if "shift" in split:
    details["shift"] = split["shift"]
    details["shift_error_px_per_video"] = split["shift_per_video"]["error_px"]
  del segmenter
  keras.backend.clear_session()
  return metrics, details


# ------------------------------------------------------------------------------------------------
# One rung, the ladder
# ------------------------------------------------------------------------------------------------


def run_rung(rung, config_path, args):
  """Data, training, evaluation and bar of one rung. Returns its JSON entry."""
  shown = (
    os.path.relpath(config_path, ROOT) if config_path.startswith(ROOT + os.sep) else config_path
  )
  entry = {
    "rung": rung,
    "config": shown,
    "dataset": RUNGS[rung]["dataset"],
    "status": "ok",
    "steps": None,
    "metrics": {key: None for key in METRIC_KEYS},
  }
  if not os.path.isfile(config_path):
    log(f"rung {rung}: {shown} does not exist: missing config")
    entry["status"] = "missing config"
    entry["bar"] = not_run_bar(rung)
    entry["verdict"] = NOT_RUN
    return entry
  rung_dir = os.path.join(args.work_dir, rung)
  model_dir = os.path.join(rung_dir, "model")
  export_dir = os.path.join(rung_dir, "export")
  for path in (model_dir, export_dir, os.path.join(rung_dir, "eval")):
    shutil.rmtree(path, ignore_errors=True)  # from scratch (the trainer would resume)
  os.makedirs(rung_dir, exist_ok=True)
  log_path = os.path.join(rung_dir, "train.log")
  if os.path.exists(log_path):
    os.remove(log_path)
  overrides = []
  if args.train_steps:
    overrides.append(f"--train_steps={args.train_steps}")
  overrides += list(args.train_flag or [])
  flag_values = _apply_overrides(read_flagfile(config_path), overrides)
  entry["train_log"] = log_path

  data_dir = _repo_path(flag_values.get("data_dir", "data/humanoid"))
  if not _dataset_present(data_dir) and flag_values.get("synthesize_if_missing"):
    log(f"rung {rung}: generating {data_dir}")
    cmd = [sys.executable, "-c", _PREPARE_DATA, f"--flagfile={config_path}", *overrides]
    code, seconds = _run_logged(cmd, log_path, args.train_timeout)
    entry["data_seconds"] = seconds
    if code != 0:
      return _failed(entry, rung, f"data generation failed (exit {code})", log_path)

  cmd = [
    sys.executable,
    "-m",
    "copart_tf.train",
    f"--flagfile={config_path}",
    f"--model_dir={model_dir}",
    f"--export_dir={'' if args.skip_export else export_dir}",
    "--evaluate_at_end=false",
    *overrides,
  ]
  entry["command"] = " ".join(["python", *cmd[1:]])
  log(f"rung {rung}: training ({entry['command']}), log {log_path}")
  code, seconds = _run_logged(cmd, log_path, args.train_timeout)
  entry["metrics"]["train_seconds"] = seconds
  try:  # the run's own config.json (written by the trainer before the first step)
    with open(os.path.join(model_dir, "config.json")) as f:
      entry["steps"] = int(json.load(f)["train_steps"])
  except (OSError, ValueError, KeyError):
    steps = flag_values.get("train_steps", "")
    entry["steps"] = int(steps) if steps.isdigit() else None
  if code != 0:
    status = "train timed out" if code is None else f"train failed (exit {code})"
    return _failed(entry, rung, status, log_path)
  log(f"rung {rung}: trained in {seconds:.1f} s")

  try:
    metrics, details = evaluate_rung(model_dir, rung_dir, RUNGS[rung]["shift_error"], args.pair_gap)
  except Exception as error:  # reported in the table; the next rung still runs
    log(f"rung {rung}: evaluation failed: {type(error).__name__}: {error}")
    entry["error"] = f"{type(error).__name__}: {error}"
    entry["status"] = "eval failed"
    entry["bar"] = evaluate_bar(rung, entry["metrics"])
    entry["verdict"] = overall_verdict(entry["bar"])
    return entry
  entry["metrics"].update(metrics)
  entry.update(details)
  entry["bar"] = evaluate_bar(rung, entry["metrics"])
  entry["verdict"] = overall_verdict(entry["bar"])
  return entry


def _failed(entry, rung, status, log_path):
  log(f"rung {rung}: {status}; last lines of {log_path}:\n{_tail(log_path)}")
  entry["status"] = status
  entry["log_tail"] = _tail(log_path)
  entry["bar"] = evaluate_bar(rung, entry["metrics"])
  entry["verdict"] = overall_verdict(entry["bar"])
  return entry


def parse_args(argv):
  parser = argparse.ArgumentParser(
    description="Trains every rung of the quality ladder from scratch and prints one table.",
  )
  parser.add_argument("--rungs", default=",".join(RUNGS), help="Comma-separated rungs (A,B,C,D).")
  parser.add_argument("--work_dir", default=DEFAULT_WORK_DIR, help="<work_dir>/<rung>/... outputs.")
  parser.add_argument(
    "--train_steps", type=int, default=0, help="Override every config's --train_steps (0 = keep)."
  )
  parser.add_argument(
    "--json_out", default="", help="JSON results (default <work_dir>/quality_ladder.json)."
  )
  parser.add_argument(
    "--pair_gap",
    type=int,
    default=DEFAULT_PAIR_GAP,
    help="Test pairs: source frame 0, targets every this many frames.",
  )
  parser.add_argument(
    "--config",
    action="append",
    default=[],
    metavar="RUNG=PATH",
    help="Use this flagfile for a rung instead of RUNGS' (repeatable).",
  )
  parser.add_argument(
    "--train_flag",
    action="append",
    default=[],
    metavar="--NAME=VALUE",
    help="Extra flag for every training (repeatable; after the flagfile, so it wins).",
  )
  parser.add_argument(
    "--skip_export", action="store_true", help="Pass --export_dir= (no SavedModel, faster)."
  )
  parser.add_argument(
    "--train_timeout", type=float, default=0.0, help="Kill a training after this many s (0 = none)."
  )
  args = parser.parse_args(argv)
  args.rungs = [r.strip().upper() for r in args.rungs.split(",") if r.strip()]
  unknown = [r for r in args.rungs if r not in RUNGS]
  if unknown or not args.rungs:
    parser.error(f"--rungs: unknown {unknown or 'empty'} (known: {','.join(RUNGS)})")
  configs = {}
  for item in args.config:
    rung, sep, path = item.partition("=")
    if not sep or rung.strip().upper() not in RUNGS or not path:
      parser.error(f"--config={item}: expected RUNG=PATH with RUNG in {','.join(RUNGS)}")
    configs[rung.strip().upper()] = os.path.abspath(path)
  args.configs = configs
  if args.pair_gap < 1:
    parser.error("--pair_gap must be >= 1")
  args.work_dir = os.path.abspath(args.work_dir)
  args.json_out = os.path.abspath(
    args.json_out or os.path.join(args.work_dir, "quality_ladder.json")
  )
  return args


def run_ladder(args):
  """Runs `args.rungs`; returns the JSON-serialisable results."""
  started = time.time()
  results = {
    "benchmark": "quality_ladder",
    "work_dir": args.work_dir,
    "pair_gap": args.pair_gap,
    "train_steps_override": args.train_steps or None,
    "train_flags": list(args.train_flag),
    "load_average_at_start": list(os.getloadavg()),
    "definitions": DEFINITIONS,
    "bars": {r: BARS[r] for r in args.rungs},
    "rungs": [],
  }
  os.makedirs(args.work_dir, exist_ok=True)
  for rung in args.rungs:
    config_path = args.configs.get(rung) or os.path.join(ROOT, RUNGS[rung]["config"])
    results["rungs"].append(run_rung(rung, config_path, args))
  results["load_average_at_end"] = list(os.getloadavg())
  results["wall_seconds"] = time.time() - started
  results["table"] = format_table(results)
  return results


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  results = run_ladder(args)
  from copart_tf.evaluation.evaluator import to_jsonable

  os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
  with open(args.json_out, "w") as f:
    json.dump(to_jsonable(results), f, indent=2, allow_nan=False)
    f.write("\n")
  print(results["table"], flush=True)
  print(f"JSON: {args.json_out}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
