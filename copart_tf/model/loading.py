"""Rebuilding a trained `CoPartModel` from a training run's model dir (model.json + checkpoints)."""

import json
import os

import tensorflow as tf

from copart_tf.errors import ModelError
from copart_tf.model.copart_model import CoPartModel, config_from_settings

CONFIG_FILE = "config.json"
MODEL_CONFIG_FILE = "model.json"
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
  return _read_json(path)


def _read_json(path):
  with open(path) as f:
    try:
      return json.load(f)
    except ValueError as error:
      raise ModelError(f"{path}: not valid JSON ({error})") from None


def _write_atomically(path, text):
  """Writes `text` to `path` through a temporary file: a reader never sees half of it."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


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
  _write_atomically(path, json.dumps(list(names), indent=2))
  return path


def read_model_config(model_dir):
  """The model's `get_config()` stored by the trainer (model.json).

  Runs written before model.json existed rebuild it from their config.json with the trainer's own
  mapping (`config_from_settings`).
  """
  path = os.path.join(model_dir, MODEL_CONFIG_FILE)
  if not os.path.exists(path):
    return config_from_settings(read_run_config(model_dir), "none")
  return _read_json(path)


def write_model_config(model_dir, model):
  """Stores `model.get_config()` as model.json (what `read_model_config` reads)."""
  path = os.path.join(model_dir, MODEL_CONFIG_FILE)
  _write_atomically(path, json.dumps(model.get_config(), indent=2, sort_keys=True))
  return path


def model_from_config(model_config, part_names=None):
  """A built (unrestored) inference model from `model_config` (`CoPartModel.get_config()`).

  The perceptual loss is never evaluated at inference, and the model runs in float32 whatever
  dtype policy it was trained under (as the export does).
  """
  config = dict(model_config, perceptual_loss="none")
  config.pop("dtype", None)
  if part_names is not None:
    config["part_names"] = list(part_names)
  try:
    model = CoPartModel.from_config(config)
  except (TypeError, ValueError) as error:
    raise ModelError(f"cannot build the model from its config: {error}") from None
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
  model_config = read_model_config(model_dir)
  names = read_part_names(model_dir, model_config["num_parts"])
  model = model_from_config(model_config, names)
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
