"""Rebuilding a trained `CoPartModel` from a training run's model dir (config.json + checkpoints)."""

import json
import os

import tensorflow as tf

from copart_tf.errors import ModelError
from copart_tf.model.copart_model import DEFAULT_LOSS_WEIGHTS, CoPartModel

CONFIG_FILE = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"
PART_NAMES_FILE = "part_names.json"


def read_run_config(model_dir):
  """The training configuration saved by `copart_tf.train` in `model_dir` (a dict)."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ModelError(
      f"{model_dir}: not a training run directory (no {CONFIG_FILE}); pass the --model_dir of a "
      "copart_tf.train run or an exported SavedModel"
    )
  with open(path) as f:
    try:
      return json.load(f)
    except ValueError as error:
      raise ModelError(f"{path}: not valid JSON ({error})") from None


def read_part_names(model_dir, num_parts):
  """Part names stored next to the checkpoints by `name_parts`, or the defaults."""
  path = os.path.join(model_dir, PART_NAMES_FILE)
  if not os.path.exists(path):
    return CoPartModel.default_part_names(num_parts)
  with open(path) as f:
    names = json.load(f)
  if len(names) != num_parts + 1:
    raise ModelError(
      f"{path}: {len(names)} names for K={num_parts} parts (need K+1, background first)"
    )
  return list(names)


def write_part_names(model_dir, names):
  """Stores part names (K+1, background first) next to the checkpoints."""
  path = os.path.join(model_dir, PART_NAMES_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(list(names), f, indent=2)
  os.replace(tmp, path)
  return path


def model_from_run_config(config, part_names=None):
  """Builds (unrestored) the model described by a run's config dict."""
  # Only the loss terms this version has: a run written by a version with a term since deleted
  # (its weight is irrelevant for inference) still loads.
  weights = {
    name: value
    for name, value in config.get("loss_weights", {}).items()
    if name in DEFAULT_LOSS_WEIGHTS
  }
  model = CoPartModel(
    num_parts=config["num_parts"],
    preset=config["preset"],
    image_size=config["image_size"],
    compose_warps=config.get("compose_warps", False),
    initial_spread=config.get("initial_spread", 0.0),
    background_warmup_steps=config.get("background_warmup_steps", 0),
    masks_follow_poses=config.get("masks_follow_poses", False),
    background_depth_offset=config.get("background_depth_offset", 0.0),
    auxiliary_warmup_steps=config.get("auxiliary_warmup_steps", 0),
    pose_prior_radius=config.get("pose_prior_radius", 0.0),
    shift_from=config.get("shift_from", "regression"),
    warp_source_pixels=config.get("warp_source_pixels", False),
    initial_scale=config.get("initial_scale", 1.0),
    detach_background_poses=config.get("detach_background_poses", False),
    gate_masks_by_claims=config.get("gate_masks_by_claims", False),
    flat_part_colours=config.get("flat_part_colours", False),
    colour_matting_gain=config.get("colour_matting_gain", 0.0),
    presence_threshold=config.get("presence_threshold", 0.0),
    depth_bound=config.get("depth_bound", 0.0),
    background_colour=config.get("background_colour", "frame_median"),
    linear_from=config.get("linear_from", "regression"),
    scale_activation=config.get("scale_activation", "tanh"),
    perceptual_loss="none",  # inference only: the loss is never evaluated
    part_names=part_names,
    **weights,
  )
  model.build()
  return model


def load_from_model_dir(model_dir, checkpoint=None):
  """Restores the latest (or the given) checkpoint of a training run for inference.

  Args:
    model_dir: the training run's `--model_dir`.
    checkpoint: optional checkpoint path prefix (default: the latest in model_dir/checkpoints).

  Returns:
    A built `CoPartModel` with restored weights and the run's part names.

  Raises:
    ModelError: not a run directory, no checkpoint, or a checkpoint that does not fit the config.
  """
  config = read_run_config(model_dir)
  names = read_part_names(model_dir, config["num_parts"])
  model = model_from_run_config(config, names)
  path = checkpoint or tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_SUBDIR))
  if not path:
    raise ModelError(f"{model_dir}: no checkpoint in {os.path.join(model_dir, CHECKPOINT_SUBDIR)}")
  try:
    # Only the model's variables: the optimizer slots in the checkpoint are ignored.
    tf.train.Checkpoint(model=model).restore(
      path
    ).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as error:
    raise ModelError(
      f"{path}: does not match the model in {os.path.join(model_dir, CONFIG_FILE)} "
      f"({str(error).splitlines()[0][:200]})"
    ) from None
  return model
