"""Exports a training run as a SavedModel version for TF Serving.

  python -m copart_tf.export --model_dir=RUN_DIR --export_base=exports/copart [--version=N] \
      [--include_masks] [--max_image_side=4096]

Writes ``export_base/<version>/`` (default version: the largest existing one + 1) atomically, so
a running tensorflow_model_server (or ``python -m serving.server``) picks it up on its next poll.
Signatures: see serving/README.md.
"""

import sys

from absl import app, flags

from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
from copart_tf.errors import CopartError

MODEL_DIR = flags.DEFINE_string(
  "model_dir", None, "Training run directory (config.json + checkpoints)."
)
CHECKPOINT = flags.DEFINE_string(
  "checkpoint", None, "Checkpoint path prefix (default: the latest in model_dir/checkpoints)."
)
EXPORT_BASE = flags.DEFINE_string(
  "export_base", None, "Model base path served by TF Serving (e.g. exports/copart)."
)
VERSION = flags.DEFINE_integer("version", None, "Version number (default: newest existing + 1).")
INCLUDE_MASKS = flags.DEFINE_bool(
  "include_masks", False, "Also return soft masks part_masks uint8 [N, S, S, K+1]."
)
MAX_IMAGE_SIDE = flags.DEFINE_integer(
  "max_image_side", 4096, "Largest image side the signatures accept (INVALID_ARGUMENT above)."
)
MODEL_NAME = flags.DEFINE_string("model_name", "copart", "Model name in the warm-up requests.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)", file=sys.stderr)
    return 2
  if not MODEL_DIR.value or not EXPORT_BASE.value:
    print("error: --model_dir and --export_base are required", file=sys.stderr)
    return 2
  if MAX_IMAGE_SIDE.value < 1:
    print(f"error: --max_image_side must be >= 1, got {MAX_IMAGE_SIDE.value}", file=sys.stderr)
    return 2
  from copart_tf.export import saved_model as export_lib  # imports TensorFlow

  try:
    path = export_lib.export_run(
      MODEL_DIR.value,
      EXPORT_BASE.value,
      checkpoint=CHECKPOINT.value,
      version=VERSION.value,
      include_masks=INCLUDE_MASKS.value,
      max_image_side=MAX_IMAGE_SIDE.value,
      model_name=MODEL_NAME.value,
    )
  except CopartError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(path)
  return 0


def run():
  app.run(main)


if __name__ == "__main__":
  run()
