r"""Pose oracles on rung A (sprites): the mask ceiling with the true poses, and pose learning alone.

  python benchmarks/pose_oracles.py [--config=configs/sprites.cfg] [--data_dir=data/sprites]
      [--steps=600] [--batch_size=8] [--seed=0] [--checks=oracle,supervised]
      [--shift_from=heatmap] [--linear_from=heatmap|regression] [--json_out=PATH]

Why: issue 17 section 3 asks for two component checks that split rung A's failure (configs/
sprites.cfg misses its bar) between "the model cannot make masks" and "the model cannot find the
poses":

- "Oracle poses: feed the true sprite poses instead of the transform head; masks must reach fg
  IoU >= 0.95" (``--checks=oracle``). The model of ``--config`` (default configs/sprites.cfg:
  K = 4, small preset, 64 px, composed warps, pyramid perceptual term, heatmap centres, pose
  prior radius 1, moved source pixels, initial scale 0.25, source reconstruction weight 1,
  background ramped in over 200 steps and blind to the poses, redundancy 1) is trained from
  scratch with the side-car's true sprite poses (`copart_tf.data.ground_truth.read_poses`:
  canonical -> image affines [A | t], normalised coordinates) in place of the transform head's
  output; everything else (encoder, part-map head, decoder) trains as usual on the same losses.
  The recipe is derived at run time (`derive_recipe`), not copied: the flagfile is parsed with
  the training CLI's own flags (`copart_tf.train.config_from_flags`) and turned into
  `CoPartModel` kwargs by `TrainConfig.model_config`, with perceptual term "pyramid" (the config
  must say --vgg_weights=none --perceptual_fallback=pyramid; anything else is an error). Then the
  seek, claims, consistency and equivariance weights are set to 0 and --gate_masks_by_claims
  off: those terms only train the poses, and the gate reads heatmap logits that the oracle's
  stand-in head does not have. K and the image size are the data's (a config that disagrees is
  logged and overridden). Sprite k drives part k; a sprite without ``pose_visible`` (absent from
  the video, centre outside the frame, or fully occluded) gets `ABSENT_POSE`, a tiny part far
  outside the frame, so its coverage and the pose prior give it no mask (caveat: the translation
  term |t_k - centroid_k| of such a part stays >= 8 and rewards moving its mask mass towards the
  frame's bottom-right corner; it dominates the logged ``translation`` loss). Pairs: two frames
  of one training video drawn uniformly (`sample_pairs`), identity warp (equivariance is off),
  no augmentation.
  Test split, with the true poses: every 4th frame of every video (`EVAL_FRAME_STRIDE`); ``fg
  IoU`` = mean over frames of `copart_tf.evaluation.metrics.foreground_iou`; ``part IoU k`` = IoU
  of part k with sprite k over all those pixels (no mapping: the poses fix which part is which);
  ``target L1`` = mean |target reconstruction - target| of `CoPartModel.forward_pair` on the
  quality ladder's test pairs (source frame 0, targets every 8 frames), next to ``copy-source
  L1`` = mean |target - source|; ``train L1`` = the target L1 term of the last training step;
  ``false positives`` / ``false negatives`` = foreground pixels wrong over the test frames, and
  how many of them lie in the one-pixel ring outside the true shapes / on their one-pixel edge.
- "Pose learning alone" (``--checks=supervised``): the encoder + transform head (``--shift_from``:
  heatmap, the sprites.cfg head, or regression; ``--linear_from``: the config's by default)
  trained alone on the true poses of the visible sprites, on single training frames: an L1 on the
  centres plus 20 x an L1 on A A^T (the part's covariance; A itself is ambiguous on symmetric
  shapes: an ellipse turned by 180 degrees is the same image with -A). On the test frames above:
  ``centre err`` = mean distance between predicted and true centres of the visible sprites, in
  pixels of the frame (normalised distance x size / 2); ``covariance L1`` = mean |A A^T - A* A*^T|
  next to predicting the mean covariance of the visible test sprites; the same baseline for the
  centres.

Both checks: `keras.utils.set_random_seed(--seed)` before the model is built, Adam(1e-3),
``--batch_size`` pairs (oracle) or frames (supervised) per step drawn with
``np.random.default_rng(--seed)``. A missing ``--data_dir`` is generated first as the trainer
would (`copart_tf.synthetic.sprites.synthesize_sprites_dataset` with the config's
--synth_train_videos, --synth_test_videos, --synth_frames, --image_size and --seed: for
sprites.cfg 200 + 20 videos x 32 frames at 64 px, data seed 0, ~20 s); a data dir without the
side-car labels, or written by another generator, is an error. Progress every 100 steps on
stderr; a table on stdout; the JSON (``--json_out``) holds the flags (with the config's path),
the derived data spec and recipe, every metric, the last step's losses and the load average at
the start and the end.

Expected (measured with sprites.cfg as of 2026-12-06, eighth session: flat part colours,
background / foreground 0.5; seed 0, 600 steps: oracle 88 s and supervised 16 s of training on
the 2-core CPU VM):

- oracle: fg IoU 0.925, part IoU 0.931 / 0.892 / 0.900 / 0.862 (mean 0.896), target L1 0.0042
  on the test pairs (copy-source 0.0360), train L1 0.0052; false positives 699 px (698 in the
  one-pixel ring), false negatives 2918 px (2781 on the shapes' one-pixel edge), over 160 test
  frames. With correct poses, decoder + assembly + losses come within 0.025 of rung A's fg bar
  (0.95) and pass its part bar (0.85); what is left is the boundary placed a pixel off. Before
  flat part colours (the seventh session's sprites.cfg, moved source pixels and background /
  foreground 2) it was fg IoU 0.891, part IoU mean 0.861, with the masks a pixel too large all
  round (the part's layer, the source's own pixels moved, reproduces anti-aliased edge pixels
  that the labels count as background; docs/EXPERIMENTS.md sections 10-11).
- supervised (heatmap centres, the config's heatmap-read linear part and log scales): centre
  error 1.04 px (21.85 px for predicting the mean centre), covariance L1 0.0022 (0.0036 for
  predicting the mean). With the reference's regression head and tanh scales: 0.77 px and
  0.0035 (no better than the mean: every scale at the tanh floor of 0.1).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# copart_tf before TensorFlow (imported lazily below): its environment defaults (oneDNN on).
from copart_tf import cli_env  # noqa: E402, F401 (TensorFlow's environment, before TF loads)
from copart_tf.data import ground_truth, layout, video_io  # noqa: E402
from copart_tf.errors import ConfigError, CopartError  # noqa: E402
from copart_tf.evaluation import metrics  # noqa: E402
from copart_tf.synthetic import sprites as sprites_lib  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_ladder  # noqa: E402  (its test pairs and table layout)

CHECKS = ("oracle", "supervised")
LOG_EVERY = 100
LEARNING_RATE = 1e-3
EVAL_FRAME_STRIDE = 4  # test frames 0, 4, 8, ... of every video
PAIR_GAP = 8  # test pairs as the quality ladder's: source frame 0, targets 8, 16, ...
# The rung-A bar (benchmarks/quality_ladder.py BARS["A"]), for the table's legend.
BAR_FG_IOU = 0.95
BAR_PART_IOU = 0.85
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "sprites.cfg")
# Loss terms switched off in the derived recipe: seek, balance, consistency and extent act on the
# transform head's heatmap logits (the parts' claims) or fit the poses to them, and equivariance
# on the poses of a warped frame; all five only train the poses. The oracle check has no poses to
# train (its stand-in head returns the true poses and all-zero heatmap logits), and the supervised
# check trains the encoder and the transform head on the true poses alone.
POSE_ONLY_TERMS = ("seek", "balance", "consistency", "extent", "equivariance")
# The pose of a sprite without pose_visible: std 0.1, centred 2.5 frame widths right of and below
# the frame (normalised coordinates span [-1, 1]).
ABSENT_POSE = np.array([[0.1, 0.0, 5.0], [0.0, 0.1, 5.0]], np.float32)


def log(message):
  print(f"[pose_oracles] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def read_config(path):
  """The `TrainConfig` of flagfile `path`, parsed with the training CLI's own absl flags.

  Parses a fresh argv (this script's own flags are argparse's) and leaves the absl flags at their
  defaults afterwards. Raises ConfigError (a CopartError) for a missing or invalid flagfile.
  """
  from absl import flags

  from copart_tf import train as train_cli  # defines the training flags

  if not os.path.isfile(path):
    raise ConfigError(f"--config={path}: no such flagfile")
  FLAGS = flags.FLAGS
  FLAGS.unparse_flags()  # the defaults: no value leaks from an earlier parse
  try:
    FLAGS(["copart_tf.train", f"--flagfile={path}"])
    config = train_cli.config_from_flags()
  except flags.Error as e:
    raise ConfigError(f"--config={path}: {e}") from None
  finally:
    FLAGS.unparse_flags()
  config.validate()
  return config


def perceptual_of(config, path):
  """The `perceptual_loss` of the recipe: the checks train without VGG-19, as the trainer does
  with --vgg_weights=none (it then uses --perceptual_fallback)."""
  if config.vgg_weights == "none" and config.perceptual_fallback == "pyramid":
    return "pyramid"
  raise ConfigError(
    f"--config={path}: --vgg_weights={config.vgg_weights} --perceptual_fallback="
    f"{config.perceptual_fallback}: these checks only reproduce --vgg_weights=none with "
    "--perceptual_fallback=pyramid (they load no VGG-19 weights)"
  )


def derive_recipe(config, path):
  """`CoPartModel` kwargs of `config` (`TrainConfig.model_config`) without `POSE_ONLY_TERMS`.

  ``num_parts`` and ``image_size`` are the config's; `run` replaces them with the data's.
  """
  recipe = config.model_config(perceptual_of(config, path))
  for term in POSE_ONLY_TERMS:
    recipe[term] = 0.0
  # Off: the gate cuts each part's mask to where its heatmap claims the content, and the oracle's
  # stand-in head has no meaningful heatmap logits (all zeros), so the gate would be meaningless.
  recipe["gate_masks_by_claims"] = False
  # Off for the same reason: a part's presence is its share of those claims.
  recipe["presence_threshold"] = 0.0
  return recipe


def derive_data_spec(config):
  """What the trainer generates for `config`: its --synth_* flags, --image_size and --seed."""
  return {
    "train_videos": config.synth_train_videos,
    "test_videos": config.synth_test_videos,
    "frames": config.synth_frames,
    "size": config.image_size,
    "seed": config.seed,
  }


def ensure_data(data_dir, spec):
  """Generates the sprites dataset at `data_dir` if it is missing or empty (as the trainer does).

  `spec`: keyword arguments of the generator, as `derive_data_spec` returns them.
  """
  if os.path.isdir(data_dir) and os.listdir(data_dir):
    return
  log(
    f"{data_dir} is missing: generating the sprites dataset ({spec['train_videos']} train + "
    f"{spec['test_videos']} test videos x {spec['frames']} frames, {spec['size']} px, seed "
    f"{spec['seed']})"
  )
  summary = sprites_lib.synthesize_sprites_dataset(
    data_dir,
    train_videos=spec["train_videos"],
    test_videos=spec["test_videos"],
    frames=spec["frames"],
    size=spec["size"],
    seed=spec["seed"],
  )
  log(f"dataset ready in {summary.get('seconds', float('nan')):.0f} s")


def check_generator(data_dir):
  """Exits when ``meta.json`` says another generator wrote `data_dir`."""
  path = os.path.join(data_dir, "meta.json")
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      generator = json.load(f).get("generator")
  except (OSError, ValueError) as e:
    raise SystemExit(f"error: cannot read {path}: {e}") from None
  if generator != sprites_lib.GENERATOR_VERSION:
    raise SystemExit(
      f"error: {data_dir} was written by {generator!r}, not {sprites_lib.GENERATOR_VERSION!r} "
      "(sprite k must be the same shape in every video); delete it to regenerate"
    )


def load_split(data_dir, split):
  """Every video of `split`: dicts with frames uint8 `[T, S, S, 3]`, poses `[T, P, 2, 3]`,
  visible bool `[T, P]` and parts uint8 `[T, S, S]` (side-car labels)."""
  videos = []
  for path in layout.split_video_paths(data_dir, split):
    name = os.path.basename(path)
    labels = os.path.join(data_dir, "labels", split, name + ".npz")
    if not os.path.isfile(labels):
      raise SystemExit(
        f"error: {labels} is missing: these checks need the side-car labels (poses, parts) of "
        f"copart_tf.synthetic.sprites; delete {data_dir} to regenerate it"
      )
    files = video_io.list_frame_files(path)
    frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    poses = ground_truth.read_poses(labels)
    parts = ground_truth.read_ground_truth(labels, num_frames=len(files))["parts"]
    if parts.shape[1:] != frames.shape[1:3]:
      raise SystemExit(f"error: {labels}: parts {parts.shape[1:]} vs frames {frames.shape[1:3]}")
    videos.append(
      {
        "name": name,
        "frames": frames,
        "poses": poses["poses"],
        "visible": poses["pose_visible"],
        "parts": parts,
      }
    )
  return videos


def oracle_poses(poses, visible):
  """The poses the oracle feeds: the true ones, `ABSENT_POSE` where a sprite is not visible."""
  poses = np.array(poses, np.float32)
  poses[~visible] = ABSENT_POSE
  return poses


def as_float(frames):
  return frames.astype(np.float32) / 255


def sample_pairs(rng, videos, batch_size):
  """Source and target frames of `batch_size` pairs: a video, then two frames, sorted."""
  sources, targets = [], []
  for _ in range(batch_size):
    video = int(rng.integers(len(videos)))
    i, j = sorted(rng.integers(len(videos[video]["frames"]), size=2))
    sources.append((video, int(i)))
    targets.append((video, int(j)))
  return sources, targets


def eval_frames(video):
  return np.arange(0, len(video["frames"]), EVAL_FRAME_STRIDE)


def _step_line(check, step, steps, losses, started, keys):
  values = " ".join(f"{k} {float(losses[k]):.4f}" for k in keys if k in losses)
  return f"{check} step {step}/{steps}: {values} ({time.time() - started:.0f} s)"


# ------------------------------------------------------------------------------------------------
# Check 1: oracle poses
# ------------------------------------------------------------------------------------------------


def true_pose_head(num_parts):
  """A layer standing in for `CoPartModel.transform_head` that returns the poses given to `set`.

  Its output has the keys of `TransformHead.call` (affines, cos_sin, scale, shift,
  heatmap_logits), so `forward_pair` and `call` run unchanged. It has no Keras weights; the poses
  live in a plain non-trainable `tf.Variable` whose batch dimension is free.
  """
  import keras
  import tensorflow as tf

  from copart_tf.ops import affine as affine_lib

  class TruePoseHead(keras.layers.Layer):
    def __init__(self, num_parts, **kwargs):
      super().__init__(**kwargs)
      self.num_parts = num_parts
      self.affines = tf.Variable(
        tf.zeros([0, num_parts, 2, 3]),
        shape=tf.TensorShape([None, num_parts, 2, 3]),
        trainable=False,
        name="true_affines",
      )

    def set(self, affines):
      self.affines.assign(tf.convert_to_tensor(affines, tf.float32))

    def build(self, input_shape):
      del input_shape
      self.built = True

    def call(self, features):
      affines = tf.convert_to_tensor(self.affines)
      shape = tf.shape(features)
      tf.debugging.assert_equal(
        tf.shape(affines)[0], shape[0], message="true poses and features: different batch sizes"
      )
      theta, scale, shift = affine_lib.to_pose(affines)
      return {
        "affines": affines,
        "cos_sin": tf.stack([tf.cos(theta), tf.sin(theta)], axis=-1),
        "scale": scale,
        "shift": shift,
        "heatmap_logits": tf.zeros([shape[0], shape[1], shape[2], self.num_parts]),
      }

  return TruePoseHead(num_parts, name="true_pose_head")


# The covariance entries (~0.01) are ~20x smaller than the centre errors at the start (~0.2).
COVARIANCE_WEIGHT = 20.0


def _edge_errors(pred, gt):
  """Counts: false positives, those in the one-pixel ring around the true foreground, false
  negatives, those in the foreground's own one-pixel edge."""
  from scipy import ndimage

  ring = ndimage.binary_dilation(gt) & ~gt
  edge = gt & ~ndimage.binary_erosion(gt)
  false_positive = pred & ~gt
  false_negative = gt & ~pred
  return np.array(
    [
      false_positive.sum(),
      (false_positive & ring).sum(),
      false_negative.sum(),
      (false_negative & edge).sum(),
    ]
  )


def run_oracle(train, test, args, recipe):
  """Trains the model of `recipe` (CoPartModel kwargs) with the true poses; returns the results."""
  import keras
  import tensorflow as tf

  from copart_tf.model.copart_model import CoPartModel
  from copart_tf.ops import affine as affine_lib

  keras.utils.set_random_seed(args.seed)
  num_parts = recipe["num_parts"]
  model = CoPartModel.from_config(recipe)
  # The benchmark isolates decoder + assembly + losses from pose learning: the true poses stand
  # in for the transform head. The swap happens before `build` (Keras locks a built model's
  # layers), so the real head is never built and has no variables; the filter below keeps any out
  # of the optimised set all the same.
  real_head = model.transform_head
  head = true_pose_head(num_parts)
  model.transform_head = head
  model.build()
  optimizer = keras.optimizers.Adam(LEARNING_RATE)
  model.compile(optimizer=optimizer)  # compute_losses ramps the background by optimizer.iterations
  excluded = {id(v) for v in real_head.weights}
  variables = [v for v in model.trainable_variables if id(v) not in excluded]
  if any(v.path.startswith("transform_head") for v in variables):
    raise RuntimeError("transform head variables in the optimised set")

  @tf.function
  def train_step(source, target, affines):
    head.set(affines)
    warp = affine_lib.identity([tf.shape(source)[0]])
    with tf.GradientTape() as tape:
      outputs = model.forward_pair(source, target, warp)
      losses = model.compute_losses(source, target, warp, outputs)
    gradients = tape.gradient(losses["total"], variables)
    optimizer.apply(gradients, variables)
    return losses

  @tf.function(reduce_retracing=True)
  def segment(images, affines):
    head.set(affines)
    return model(images)["part_labels"]

  @tf.function(reduce_retracing=True)
  def reconstruct(source, target, affines):
    head.set(affines)
    warp = affine_lib.identity([tf.shape(source)[0]])
    return model.forward_pair(source, target, warp)["target_reconstruction"]

  train_poses = [oracle_poses(v["poses"], v["visible"]) for v in train]
  rng = np.random.default_rng(args.seed)
  keys = ("total", "rec_target", "l1", "redundancy", "background", "translation", "rotation_scale")
  started = time.time()
  for step in range(args.steps):
    sources, targets = sample_pairs(rng, train, args.batch_size)
    source = as_float(np.stack([train[v]["frames"][i] for v, i in sources]))
    target = as_float(np.stack([train[v]["frames"][j] for v, j in targets]))
    source_poses = np.stack([train_poses[v][i] for v, i in sources])
    target_poses = np.stack([train_poses[v][j] for v, j in targets])
    # Poses of the encoder's three images: source, target, warped target (identity warp).
    affines = np.concatenate([source_poses, target_poses, target_poses])
    losses = train_step(source, target, affines)
    if step % LOG_EVERY == 0 or step == args.steps - 1:
      log(_step_line("oracle", step + 1, args.steps, losses, started, keys))
  train_seconds = time.time() - started
  last = {k: float(v) for k, v in losses.items()}

  started = time.time()
  fg_ious = []
  edge_counts = np.zeros(4, np.int64)
  confusion = np.zeros([num_parts + 1, num_parts + 1], np.int64)
  model_l1, copy_l1 = [], []
  for video in test:
    poses = oracle_poses(video["poses"], video["visible"])
    idx = eval_frames(video)
    labels = segment(as_float(video["frames"][idx]), poses[idx]).numpy()
    for pred, gt in zip(labels, video["parts"][idx], strict=True):
      fg_ious.append(metrics.foreground_iou(pred, gt))
      edge_counts += _edge_errors(pred > 0, gt > 0)
      confusion += metrics.confusion_counts(pred, gt, num_parts, num_parts)
    pairs = quality_ladder.pair_indices(len(video["frames"]), PAIR_GAP)
    if pairs:
      src_idx, tgt_idx = (np.array(c) for c in zip(*pairs, strict=True))
      source = as_float(video["frames"][src_idx])
      target = as_float(video["frames"][tgt_idx])
      affines = np.concatenate([poses[src_idx], poses[tgt_idx], poses[tgt_idx]])
      rec = reconstruct(source, target, affines).numpy()
      model_l1 += list(np.abs(rec - target).mean(axis=(1, 2, 3)))
      copy_l1 += list(np.abs(source - target).mean(axis=(1, 2, 3)))
  iou = metrics.iou_matrix(confusion)
  part_iou = [float(iou[k, k]) for k in range(1, num_parts + 1)]
  return {
    "steps": args.steps,
    "train_seconds": train_seconds,
    "eval_seconds": time.time() - started,
    "metrics": {
      "fg_iou": float(np.mean(fg_ious)),
      "part_iou": part_iou,
      "part_iou_mean": float(np.mean(part_iou)),
      "target_l1": float(np.mean(model_l1)) if model_l1 else None,
      "copy_source_l1": float(np.mean(copy_l1)) if copy_l1 else None,
      "train_l1": last["l1"],
      # Foreground errors in pixels over the test frames: where the masks are wrong.
      "false_positive_px": int(edge_counts[0]),
      "false_positive_ring_px": int(edge_counts[1]),
      "false_negative_px": int(edge_counts[2]),
      "false_negative_edge_px": int(edge_counts[3]),
    },
    "iou_matrix": iou,
    "test_frames": len(fg_ious),
    "test_pairs": len(model_l1),
    "last_step_losses": last,
  }


# ------------------------------------------------------------------------------------------------
# Check 2: supervised transform head
# ------------------------------------------------------------------------------------------------


def run_supervised(train, test, args, recipe):
  """Trains encoder + transform head of `recipe` on the true poses; returns the results."""
  import keras
  import tensorflow as tf

  from copart_tf.model.copart_model import CoPartModel

  keras.utils.set_random_seed(args.seed)
  size = recipe["image_size"]
  linear_from = args.linear_from or recipe["linear_from"]
  if args.shift_from != "heatmap":
    linear_from = "regression"  # the heatmap-read linear part needs heatmap centres
  model = CoPartModel.from_config(dict(recipe, shift_from=args.shift_from, linear_from=linear_from))
  model.build()
  optimizer = keras.optimizers.Adam(LEARNING_RATE)
  variables = model.encoder.trainable_variables + model.transform_head.trainable_variables

  def covariance_of(affines):  # A A^T, [..., 2, 2]
    return tf.linalg.matmul(affines[..., :2], affines[..., :2], transpose_b=True)

  @tf.function
  def train_step(images, poses, visible):
    with tf.GradientTape() as tape:
      affines = model.transform_head(model.encoder(images))["affines"]
      weight = tf.cast(visible, tf.float32)[..., None, None]
      # Centres: L1. Linear part: L1 of A A^T (the part's covariance, what the rotation/scale loss
      # fits), because A itself is ambiguous on symmetric shapes: an ellipse turned by 180
      # degrees is the same image with -A, so an L1 on A asks for the unseeable.
      centre = tf.reduce_sum(weight * tf.abs(affines[..., 2:] - poses[..., 2:])) / 2
      covariance = tf.abs(covariance_of(affines) - covariance_of(poses))
      loss = centre + COVARIANCE_WEIGHT * tf.reduce_sum(weight * covariance) / 4
      loss /= tf.reduce_sum(weight)
    gradients = tape.gradient(loss, variables)
    optimizer.apply(gradients, variables)
    return {"l1": loss}

  @tf.function(reduce_retracing=True)
  def predict(images):
    return model.transform_head(model.encoder(images))["affines"]

  frames = np.concatenate([v["frames"] for v in train])
  poses = np.concatenate([v["poses"] for v in train])
  visible = np.concatenate([v["visible"] for v in train])
  rng = np.random.default_rng(args.seed)
  started = time.time()
  for step in range(args.steps):
    i = rng.integers(len(frames), size=args.batch_size)
    losses = train_step(as_float(frames[i]), poses[i], visible[i])
    if step % LOG_EVERY == 0 or step == args.steps - 1:
      log(_step_line("supervised", step + 1, args.steps, losses, started, ("l1",)))
  train_seconds = time.time() - started

  started = time.time()
  pred, true, vis = [], [], []
  for video in test:
    idx = eval_frames(video)
    pred.append(predict(as_float(video["frames"][idx])).numpy())
    true.append(video["poses"][idx])
    vis.append(video["visible"][idx])
  pred, true, vis = np.concatenate(pred), np.concatenate(true), np.concatenate(vis)
  pred, true = pred[vis], true[vis]  # [N visible sprites, 2, 3]
  half = size / 2
  mean = true.mean(axis=0)
  centre = np.linalg.norm(pred[:, :, 2] - true[:, :, 2], axis=-1).mean() * half
  centre_mean = np.linalg.norm(mean[None, :, 2] - true[:, :, 2], axis=-1).mean() * half
  pred_cov = covariance_of(pred).numpy()
  true_cov = covariance_of(true).numpy()
  linear = np.abs(pred_cov - true_cov).mean()
  linear_mean = np.abs(true_cov.mean(axis=0)[None] - true_cov).mean()
  return {
    "steps": args.steps,
    "train_seconds": train_seconds,
    "eval_seconds": time.time() - started,
    "shift_from": args.shift_from,
    "linear_from": linear_from,
    "metrics": {
      "centre_error_px": float(centre),
      "centre_error_px_mean_baseline": float(centre_mean),
      "covariance_l1": float(linear),
      "covariance_l1_mean_baseline": float(linear_mean),
      "train_l1": float(losses["l1"]),
    },
    "test_sprites": int(len(true)),
  }


# ------------------------------------------------------------------------------------------------
# Table, flags, main
# ------------------------------------------------------------------------------------------------


def _metrics_cell(check, result):
  m = result["metrics"]
  if check == "oracle":
    parts = " / ".join(f"{v:.3f}" for v in m["part_iou"])
    text = f"fg IoU {m['fg_iou']:.3f}; part IoU {parts} (mean {m['part_iou_mean']:.3f})"
    if m["target_l1"] is not None:
      text += f"; target L1 {m['target_l1']:.4f} (copy {m['copy_source_l1']:.4f})"
    text += f"; train L1 {m['train_l1']:.4f}"
    return text + (
      f"; false positives {m['false_positive_px']} px ({m['false_positive_ring_px']} in the "
      f"1-px ring), false negatives {m['false_negative_px']} px ({m['false_negative_edge_px']} "
      "on the 1-px edge)"
    )
  return (
    f"{result['shift_from']} / {result['linear_from']}: centre err {m['centre_error_px']:.2f} px "
    f"(mean {m['centre_error_px_mean_baseline']:.2f}); covariance L1 {m['covariance_l1']:.4f} "
    f"(mean {m['covariance_l1_mean_baseline']:.4f})"
  )


def format_table(results):
  rows = [["check", "steps", "seconds (train)", "metrics"]]
  for check, result in results["checks"].items():
    rows.append(
      [check, str(result["steps"]), f"{result['train_seconds']:.0f}", _metrics_cell(check, result)]
    )
  lines = quality_ladder.text_table(rows)
  lines.append(
    f"rung-A bar: fg IoU >= {BAR_FG_IOU}, part IoU >= {BAR_PART_IOU}; test frames every "
    f"{EVAL_FRAME_STRIDE}th, pairs every {PAIR_GAP} frames from frame 0; L1 on [0, 1] pixels; "
    "mean = predicting the mean test pose"
  )
  return "\n".join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--data_dir",
    default=os.path.join(ROOT, "data", "sprites"),
    help="Sprites dataset with side-car labels (generated if missing; default: the repository's "
    "data/sprites).",
  )
  parser.add_argument(
    "--config",
    default=DEFAULT_CONFIG,
    help="Training flagfile whose model recipe and --synth_* data the checks use (default: the "
    "repository's configs/sprites.cfg).",
  )
  parser.add_argument("--steps", type=int, default=600, help="Training steps of every check.")
  parser.add_argument("--batch_size", type=int, default=8, help="Pairs (or frames) per step.")
  parser.add_argument("--seed", type=int, default=0, help="Weights and pair sampling seed.")
  parser.add_argument(
    "--checks", default=",".join(CHECKS), help="Comma-separated checks (oracle,supervised)."
  )
  parser.add_argument(
    "--shift_from",
    default="heatmap",
    choices=("heatmap", "regression"),
    help="Transform head centres of the supervised check.",
  )
  parser.add_argument(
    "--linear_from",
    default=None,
    choices=("heatmap", "regression"),
    help="Transform head rotation and scale of the supervised check (default: the config's; "
    "heatmap needs --shift_from=heatmap).",
  )
  parser.add_argument("--json_out", default="", help="Write the results as JSON here.")
  args = parser.parse_args(argv)
  args.checks = [c.strip() for c in args.checks.split(",") if c.strip()]
  unknown = [c for c in args.checks if c not in CHECKS]
  if unknown or not args.checks:
    parser.error(f"--checks: unknown {unknown or 'empty'} (known: {','.join(CHECKS)})")
  if args.steps < 1:
    parser.error("--steps must be >= 1")
  if args.batch_size < 1:
    parser.error("--batch_size must be >= 1")
  args.data_dir = os.path.abspath(args.data_dir)
  args.config = os.path.abspath(args.config)
  return args


def run(args):
  started = time.time()
  try:
    train_config = read_config(args.config)
    recipe = derive_recipe(train_config, args.config)
    data_spec = derive_data_spec(train_config)
  except CopartError as e:
    raise SystemExit(f"error: {e}") from None
  results = {
    "benchmark": "pose_oracles",
    "config": {k: v for k, v in vars(args).items()},
    "data_spec": data_spec,
    "load_average_at_start": list(os.getloadavg()),
    "checks": {},
  }
  try:
    ensure_data(args.data_dir, data_spec)
    check_generator(args.data_dir)
    log(f"loading {args.data_dir}")
    train = load_split(args.data_dir, "train")
    test = load_split(args.data_dir, "test")
  except CopartError as e:
    raise SystemExit(f"error: {e}") from None
  size = train[0]["frames"].shape[1]
  num_parts = train[0]["poses"].shape[1]
  # The data wins: sprite k drives part k, so K is the data's number of sprites, and the frames
  # fix the model's input size.
  for name, value in (("num_parts", num_parts), ("image_size", size)):
    if recipe[name] != value:
      log(f"{args.config}: --{name}={recipe[name]}, the data has {value}: using {value}")
  recipe.update(num_parts=num_parts, image_size=size)
  results["recipe"] = recipe
  results["absent_pose"] = ABSENT_POSE
  results["data"] = {
    "train_videos": len(train),
    "test_videos": len(test),
    "frame_size": size,
    "num_sprites": num_parts,
  }
  log(f"{len(train)} train + {len(test)} test videos, {size} px, {num_parts} sprites")
  runners = {"oracle": run_oracle, "supervised": run_supervised}
  for check in args.checks:
    log(f"{check}: {args.steps} steps")
    results["checks"][check] = runners[check](train, test, args, recipe)
  results["load_average_at_end"] = list(os.getloadavg())
  results["wall_seconds"] = time.time() - started
  results["table"] = format_table(results)
  return results


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  results = run(args)
  print(results["table"], flush=True)
  if args.json_out:
    from copart_tf.evaluation.evaluator import to_jsonable

    os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
    with open(args.json_out, "w") as f:
      json.dump(to_jsonable(results), f, indent=2, allow_nan=False)
      f.write("\n")
    print(f"JSON: {args.json_out}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
