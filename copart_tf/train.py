"""Trains a co-part segmentation model.

  python -m copart_tf.train --flagfile=configs/demo.cfg [--flag=override ...]

Later flags override the flagfile's. Restarting the same command resumes from the latest
checkpoint in --model_dir. See the README's configuration reference for every flag.
"""

import dataclasses
import json
import sys

from absl import app, flags, logging

from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
from copart_tf.errors import CopartError
from copart_tf.model.copart_model import DEFAULT_LOSS_WEIGHTS
from copart_tf.model.presets import PRESETS
from copart_tf.training import config as config_lib

_D = config_lib.TrainConfig()

DATA_DIR = flags.DEFINE_string("data_dir", _D.data_dir, "Dataset root (FOMM layout).")
MODEL_DIR = flags.DEFINE_string("model_dir", _D.model_dir, "Checkpoints, TensorBoard logs, eval.")
TRAIN_STEPS = flags.DEFINE_integer("train_steps", _D.train_steps, "Total optimizer steps.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", _D.batch_size, "GLOBAL batch size (all replicas).")
NUM_PARTS = flags.DEFINE_integer(
  "num_parts", _D.num_parts, "K, foreground parts (background extra)."
)
IMAGE_SIZE = flags.DEFINE_integer("image_size", _D.image_size, "Model input side, pixels.")
PRESET = flags.DEFINE_string("preset", _D.preset, f"Architecture: {'|'.join(sorted(PRESETS))}.")
STRATEGY = flags.DEFINE_string("strategy", _D.strategy, "default | mirrored | multi_worker.")
NUM_CPU_DEVICES = flags.DEFINE_integer(
  "num_cpu_devices", _D.num_cpu_devices, "Logical CPU devices for --strategy=mirrored without GPUs."
)
CLUSTER_TIMEOUT = flags.DEFINE_float(
  "cluster_timeout",
  _D.cluster_timeout,
  "--strategy=multi_worker: seconds to wait for every worker in TF_CONFIG to come up.",
)
LEARNING_RATE = flags.DEFINE_float("learning_rate", _D.learning_rate, "Adam learning rate (peak).")
LR_WARMUP = flags.DEFINE_integer("lr_warmup_steps", _D.lr_warmup_steps, "Linear warm-up steps.")
LR_DECAY_START = flags.DEFINE_float(
  "lr_decay_start",
  _D.lr_decay_start,
  "Fraction of train_steps where cosine decay starts (1 = none).",
)
CLIP_GRAD_NORM = flags.DEFINE_float(
  "clip_grad_norm", _D.clip_grad_norm, "Clip gradients to this global norm (0 = no clipping)."
)
VGG_WEIGHTS = flags.DEFINE_string(
  "vgg_weights",
  _D.vgg_weights,
  "auto (Keras cache file if present) | imagenet (download) | random | none | PATH to "
  "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.",
)
PERCEPTUAL_FALLBACK = flags.DEFINE_string(
  "perceptual_fallback",
  _D.perceptual_fallback,
  "Used (and logged loudly) when no ImageNet VGG weights are available: pyramid | none.",
)
EXPORT_DIR = flags.DEFINE_string(
  "export_dir", _D.export_dir, "Export base dir for the SavedModel at the end (empty = none)."
)
SEED = flags.DEFINE_integer(
  "seed", _D.seed, "Seed of the initial weights, data sampling, augmentation and warps."
)
COMPOSE_WARPS = flags.DEFINE_bool(
  "compose_warps", _D.compose_warps, "Warp latent maps once with composed transforms."
)
INITIAL_SPREAD = flags.DEFINE_float(
  "initial_spread",
  _D.initial_spread,
  "Radius of the disc the initial part centres are spread over (0 = reference: all at 0).",
)
BACKGROUND_WARMUP = flags.DEFINE_integer(
  "background_warmup_steps",
  _D.background_warmup_steps,
  "Ramp the background loss from 0 to its weight over this many steps (0 = reference).",
)
RESEED_EVERY = flags.DEFINE_integer(
  "reseed_every",
  _D.reseed_every,
  "Every this many steps (up to --reseed_until), a part that wins less than --reseed_min_share "
  "of the batch's foreground pixels becomes a copy of the largest part, split from it along its "
  "principal axis (copart_tf.training.reseeding; 0 = off, the paper).",
)
RESEED_UNTIL = flags.DEFINE_integer(
  "reseed_until", _D.reseed_until, "Last step at which --reseed_every checks for dead parts."
)
RESEED_MIN_SHARE = flags.DEFINE_float(
  "reseed_min_share",
  _D.reseed_min_share,
  "A part winning less than this fraction of the foreground pixels is dead (--reseed_every).",
)
MASKS_FOLLOW_POSES = flags.DEFINE_bool(
  "masks_follow_poses",
  _D.masks_follow_poses,
  "Translation and rotation/scale losses move only the masks (poses learn from the rest).",
)
BACKGROUND_DEPTH_OFFSET = flags.DEFINE_float(
  "background_depth_offset",
  _D.background_depth_offset,
  "Added to the background depth logit (0 = reference; > 0 starts with masks on the background).",
)
AUXILIARY_WARMUP = flags.DEFINE_integer(
  "auxiliary_warmup_steps",
  _D.auxiliary_warmup_steps,
  "Ramp every non-reconstruction loss from 0 over this many steps (0 = reference).",
)
POSE_PRIOR_RADIUS = flags.DEFINE_float(
  "pose_prior_radius",
  _D.pose_prior_radius,
  "Add a Gaussian of this many part standard deviations around each pose to its depth logits "
  "(0 = reference: no prior).",
)
WARP_SOURCE_PIXELS = flags.DEFINE_bool(
  "warp_source_pixels",
  _D.warp_source_pixels,
  "Add the source frame moved by each part's motion to its decoded image, and the frame's median "
  "colour to the background's (false = reference: every colour decoded from the latent maps).",
)
INITIAL_SCALE = flags.DEFINE_float(
  "initial_scale",
  _D.initial_scale,
  "Scale every part's pose starts at, inside the range of --scale_activation ((0.1, 1.9) for "
  "tanh, (0.02, 1.9) for log; 1 = reference: as large as the frame).",
)
DETACH_BACKGROUND_POSES = flags.DEFINE_bool(
  "detach_background_poses",
  _D.detach_background_poses,
  "The background terms see the pose prior and coverage as constants: they shape masks through "
  "the decoded depth only and cannot push parts out of the frame (false = reference).",
)
GATE_MASKS_BY_CLAIMS = flags.DEFINE_bool(
  "gate_masks_by_claims",
  _D.gate_masks_by_claims,
  "Needs --shift_from=heatmap: a part's mask exists only where the part claims the content (the "
  "log of its claims, moved with its latent map, is added to its depth; false = reference).",
)
FLAT_PART_COLOURS = flags.DEFINE_bool(
  "flat_part_colours",
  _D.flat_part_colours,
  "Needs --warp_source_pixels: each part's pixels are one flat colour per image (its mean colour "
  "under its pose) instead of the moved source, so masks end at the objects' anti-aliased edges.",
)
COLOUR_MATTING_GAIN = flags.DEFINE_float(
  "colour_matting_gain",
  _D.colour_matting_gain,
  "Needs --warp_source_pixels: > 0 adds gain x (2 alpha - 1) to each part's depth, alpha the "
  "moved source pixel's coverage by the part's flat colour over the background's (or, without "
  "--flat_part_colours, its distance from the background over 0.1; 0 = reference).",
)
PRESENCE_THRESHOLD = flags.DEFINE_float(
  "presence_threshold",
  _D.presence_threshold,
  "Needs --gate_masks_by_claims and --warp_source_pixels: > 0 hides a part that claims less than "
  "this share of the frame's content (its depth gets log(share / threshold); 0 = reference).",
)
DEPTH_BOUND = flags.DEFINE_float(
  "depth_bound",
  _D.depth_bound,
  "> 0 bounds the decoded depth logits to (-bound, bound) with a scaled tanh, so the decoder "
  "cannot switch a part off for good (0 = reference: unbounded).",
)
BACKGROUND_COLOUR = flags.DEFINE_enum(
  "background_colour",
  _D.background_colour,
  ["frame_median", "row_median"],
  "With --warp_source_pixels: the plain-background estimate the background layer starts from and "
  "content is measured against: one median colour per frame, or per row (a wall above a floor).",
)
SHIFT_FROM = flags.DEFINE_string(
  "shift_from",
  _D.shift_from,
  "Part centres: regression (reference: dense layer on flattened features) or heatmap "
  "(soft-argmax of a per-part heatmap).",
)
LINEAR_FROM = flags.DEFINE_string(
  "linear_from",
  _D.linear_from,
  "Part rotation and scale: regression (reference: dense layers on flattened features) or heatmap "
  "(needs --shift_from=heatmap: a per-cell map averaged under each part's heatmap).",
)
SCALE_ACTIVATION = flags.DEFINE_string(
  "scale_activation",
  _D.scale_activation,
  "Part scales: tanh (reference: 0.9 tanh(z) + 1, in (0.1, 1.9)) or log (a sigmoid over log "
  "scales in (0.02, 1.9), for parts smaller than a tenth of the frame).",
)
BACKGROUND_ON = flags.DEFINE_string(
  "background_on", _D.background_on, "Background loss on retarget masks, or both."
)
COV_THRESHOLD = flags.DEFINE_float(
  "covariance_threshold", _D.covariance_threshold, "zeta of the rotation/scale loss."
)
EQ_ROTATION = flags.DEFINE_float(
  "equivariance_rotation_deg", _D.equivariance_rotation_deg, "Max rotation of the random warp W."
)
AUGMENT = flags.DEFINE_bool("augment", _D.augment, "Time flip, rotation, colour jitter.")
AUGMENT_ROTATION = flags.DEFINE_float(
  "augment_rotation_deg",
  _D.augment_rotation_deg,
  "Max rotation of --augment (the reference's 10; 0 keeps a horizon level for the row-median "
  "background).",
)
ID_SAMPLING = flags.DEFINE_bool("id_sampling", _D.id_sampling, "Sample identities equally.")
ON_BAD_FRAME = flags.DEFINE_string("on_bad_frame", _D.on_bad_frame, "fail | skip.")
CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", _D.checkpoint_every, "Steps.")
KEEP_CHECKPOINTS = flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Kept on disk.")
LOG_EVERY = flags.DEFINE_integer("log_every", _D.log_every, "Steps between scalar summaries.")
IMAGE_EVERY = flags.DEFINE_integer("image_every", _D.image_every, "Steps between image grids.")
JIT_COMPILE = flags.DEFINE_bool("jit_compile", _D.jit_compile, "XLA-compile the train step.")
MIXED_PRECISION = flags.DEFINE_string(
  "mixed_precision", _D.mixed_precision, "float32 | mixed_float16 | mixed_bfloat16."
)
SYNTHESIZE = flags.DEFINE_string(
  "synthesize_if_missing",
  _D.synthesize_if_missing,
  "If --data_dir is missing, generate this synthetic body there first (e.g. humanoid_mocap).",
)
SYNTH_TRAIN = flags.DEFINE_integer("synth_train_videos", _D.synth_train_videos, "Synthetic videos.")
SYNTH_TEST = flags.DEFINE_integer("synth_test_videos", _D.synth_test_videos, "Synthetic videos.")
SYNTH_FRAMES = flags.DEFINE_integer("synth_frames", _D.synth_frames, "Frames per synthetic video.")
SYNTH_SUPERSAMPLE = flags.DEFINE_integer(
  "synth_supersample", _D.synth_supersample, "Anti-aliasing factor of the renderer."
)
SYNTH_BACKGROUND = flags.DEFINE_string(
  "synth_background", _D.synth_background, "Synthetic floors: plain | mixed | textured."
)
SYNTH_CLIPS = flags.DEFINE_string(
  "synth_clips",
  _D.synth_clips,
  "Comma-separated mocap clips ('upright' = standing clips; empty = all).",
)
SYNTH_SEED = flags.DEFINE_integer(
  "synth_seed", _D.synth_seed, "Seed of the generated dataset (independent of --seed)."
)
EVALUATE_AT_END = flags.DEFINE_bool(
  "evaluate_at_end", _D.evaluate_at_end, "Evaluate on the test split when ground truth exists."
)
EVAL_FIT_FRAMES = flags.DEFINE_integer(
  "eval_fit_frames_per_video", _D.eval_fit_frames_per_video, "Fit-split frames per video (0=all)."
)
EVAL_TEST_FRAMES = flags.DEFINE_integer(
  "eval_test_frames_per_video", _D.eval_test_frames_per_video, "Test frames per video (0 = all)."
)
STOP_AFTER = flags.DEFINE_integer(
  "stop_after_steps", 0, "Stop after this many steps of this invocation (0 = run to the end)."
)
LOSS_FLAGS = {
  name: flags.DEFINE_float(f"loss_{name}", value, f"Loss weight '{name}' (DESIGN.md §5).")
  for name, value in DEFAULT_LOSS_WEIGHTS.items()
}


def config_from_flags():
  values = {}
  for field in dataclasses.fields(config_lib.TrainConfig):
    if field.name == "loss_weights":
      continue
    values[field.name] = flags.FLAGS[field.name].value
  values["loss_weights"] = {name: holder.value for name, holder in LOSS_FLAGS.items()}
  return config_lib.TrainConfig(**values)


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)", file=sys.stderr)
    return 2
  if NUM_CPU_DEVICES.present and STRATEGY.value != "mirrored":
    logging.warning(
      "--num_cpu_devices=%d is ignored: it only applies to --strategy=mirrored (this run: "
      "--strategy=%s)",
      NUM_CPU_DEVICES.value,
      STRATEGY.value,
    )
  from copart_tf.training import shutdown

  try:
    from copart_tf.training import trainer  # imports TensorFlow

    config = config_from_flags()
    summary = trainer.train(config, stop_after_steps=STOP_AFTER.value or None)
  except CopartError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  except shutdown.Interrupted as stop:
    print(f"interrupted: {stop.name} outside the training loop; nothing to save", file=sys.stderr)
    return shutdown.exit_code(stop.signum)
  except KeyboardInterrupt:  # Ctrl-C while TensorFlow is being imported
    print("interrupted: SIGINT while starting; nothing to save", file=sys.stderr)
    return shutdown.exit_code(shutdown.signal.SIGINT)
  table = summary.pop("evaluation_table", None)
  logging.info("done: %s", json.dumps(summary, indent=2, default=str))
  print(f"\nmodel dir:   {config.model_dir}  (tensorboard --logdir {config.model_dir})")
  print(f"checkpoint:  {summary.get('checkpoint')}")
  if summary.get("interrupted"):
    print(
      f"interrupted: {summary['interrupted']} at step {summary['step']}; run the same command "
      "again to resume from the checkpoint above",
      file=sys.stderr,
    )
    return shutdown.exit_code(summary["exit_signal"])
  if summary.get("export"):
    print(f"SavedModel:  {summary['export']}")
  if table:
    print(f"evaluation:  {summary.get('report_dir')}/report.md\n{table}")
  return 0


def run():
  app.run(main)


if __name__ == "__main__":
  run()
