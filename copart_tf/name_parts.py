"""Names a trained model's parts once; every later overlay, track file and export uses the names.

  python -m copart_tf.name_parts --model=RUN_DIR --names=head,torso,left_arm,...
  python -m copart_tf.name_parts --model=RUN_DIR --from_labels=DATA_ROOT [--split=train]
      [--frames_per_video=16]

Either exactly K names (one per foreground part, in part order; the background is implied), or
names taken from ground truth: each learned part gets the name of the ground-truth part it
overlaps most on --split (the evaluation's majority mapping). Several learned parts on the same
GT part are named ``torso``, ``torso_2``, ... (by decreasing overlap); parts that mostly cover the
GT background are named ``background_<k>`` (k = the learned part's index).

The names are stored with the checkpoints (``RUN_DIR/part_names.json``). SavedModels carry the
names they were exported with: --export_base=DIR also writes a new export version with the new
names (what a running server then loads). --dry_run prints the names without writing anything.
Bad input: ``error: <message>``, exit status 2.
"""

import os

from absl import flags

from copart_tf.apps import cli

MODEL = flags.DEFINE_string("model", None, "Training run dir (config.json + checkpoints).")
NAMES = flags.DEFINE_string("names", None, "K comma-separated names (background implied).")
FROM_LABELS = flags.DEFINE_string(
  "from_labels",
  None,
  "Dataset root with part labels under labels/ (npz or per-frame PNGs): name parts by majority "
  "overlap.",
)
SPLIT = flags.DEFINE_string("split", "train", "Split used with --from_labels.")
FRAMES_PER_VIDEO = flags.DEFINE_integer(
  "frames_per_video", 16, "Frames per video used with --from_labels (0 = all)."
)
BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Frames per model call with --from_labels.")
EXPORT_BASE = flags.DEFINE_string(
  "export_base", None, "Also export a new SavedModel version with the names into this base."
)
DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the names, write nothing.")


# = copart_tf.model.loading.CONFIG_FILE (not imported here: it imports TensorFlow, and bad flags
# should fail in a fraction of a second).
_CONFIG_FILE = "config.json"


def _check_run_dir(path):
  """The run's config dict; ModelError if `path` is not a training run dir."""
  import json

  from copart_tf.errors import ModelError

  if not os.path.isdir(path):
    raise ModelError(f"{path}: no such directory (expected a training run dir)")
  config_path = os.path.join(path, _CONFIG_FILE)
  if not os.path.isfile(config_path):
    hint = ""
    if os.path.isfile(os.path.join(path, "saved_model.pb")) or any(
      name.isdigit() for name in os.listdir(path)
    ):
      hint = " (this looks like an export: names are baked into exports, re-export after naming)"
    raise ModelError(
      f"{path}: not a training run dir (no {_CONFIG_FILE}); name_parts needs the --model_dir of "
      f"a copart_tf.train run{hint}"
    )
  try:
    with open(config_path) as f:
      config = json.load(f)
    return config, int(config["num_parts"])
  except (ValueError, KeyError, TypeError) as error:
    raise ModelError(f"{config_path}: not a valid run config ({error})") from None


def main():
  cli.require(MODEL.value, "--model is required (a training run dir)")
  cli.require(
    bool(NAMES.value) != bool(FROM_LABELS.value),
    "give exactly one of --names=a,b,... and --from_labels=DATA_ROOT",
  )
  cli.require(FRAMES_PER_VIDEO.value >= 0, "--frames_per_video must be >= 0")
  cli.require(BATCH_SIZE.value >= 1, "--batch_size must be >= 1")
  from copart_tf.apps import naming

  _, num_parts = _check_run_dir(MODEL.value)
  if NAMES.value:
    names = naming.parse_names(NAMES.value, num_parts)
  else:
    from copart_tf.inference import Segmenter  # imports TensorFlow

    segmenter = Segmenter.load(MODEL.value, batch_size=BATCH_SIZE.value)
    result = naming.names_from_labels(
      segmenter,
      FROM_LABELS.value,
      SPLIT.value,
      segmenter.image_size,
      num_parts,
      frames_per_video=FRAMES_PER_VIDEO.value or None,
      batch_size=BATCH_SIZE.value,
    )
    names = result["names"]
    print(f"majority mapping on {result['frames']} frames of {FROM_LABELS.value} ({SPLIT.value}):")
    print(naming.format_mapping(result))
  from copart_tf.model import loading  # imports TensorFlow

  previous = loading.read_part_names(MODEL.value, num_parts)
  print(f"part names: {', '.join(names)}")
  if DRY_RUN.value:
    print(f"(dry run: nothing written; current names: {', '.join(previous)})")
    return 0
  path = loading.write_part_names(MODEL.value, names)
  print(f"wrote {path}")
  if EXPORT_BASE.value:
    from copart_tf.export import saved_model as export_lib  # imports TensorFlow

    print(f"exported {export_lib.export_run(MODEL.value, EXPORT_BASE.value)}")
  return 0


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
