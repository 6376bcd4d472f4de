"""Evaluates a trained model against ground truth (DESIGN.md §7).

  python -m copart_tf.evaluate --model=RUN_DIR_or_SAVED_MODEL --data=ROOT [--split=test]
      [--fit_split=train] [--output=DIR]

Prints the table (model vs `position k-means` vs `mean landmark`), and writes metrics.json,
report.md, part_iou.png and samples.png to --output (default: <model>/eval or ./eval_<name>).
"""

import json
import os
import sys

from absl import app, flags

from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
from copart_tf.errors import CopartError

MODEL = flags.DEFINE_string("model", None, "Training run dir (checkpoints) or exported SavedModel.")
DATA = flags.DEFINE_string(
  "data", None, "Dataset root with ground truth under labels/ (README: Bringing your own labels)."
)
SPLIT = flags.DEFINE_string("split", "test", "Split the metrics are measured on.")
FIT_SPLIT = flags.DEFINE_string(
  "fit_split",
  "train",
  "Split used to map learned parts to GT parts and fit the landmark regressor.",
)
OUTPUT = flags.DEFINE_string("output", "", "Report directory (default: <model>/eval).")
FIT_FRAMES = flags.DEFINE_integer(
  "fit_frames_per_video", 16, "Fit-split frames per video (0 = all)."
)
TEST_FRAMES = flags.DEFINE_integer("test_frames_per_video", 0, "Test frames per video (0 = all).")
BATCH = flags.DEFINE_integer("batch_size", 16, "Frames per forward pass.")


def default_output(model_path):
  model_path = os.path.normpath(model_path)
  if os.path.exists(os.path.join(model_path, "config.json")):
    return os.path.join(model_path, "eval")
  return os.path.join(os.getcwd(), "eval_" + os.path.basename(model_path))


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not MODEL.value or not DATA.value:
    print("error: --model and --data are required", file=sys.stderr)
    return 2
  from copart_tf import inference
  from copart_tf.evaluation import run as eval_run

  try:
    segmenter = inference.Segmenter.load(MODEL.value)
    output = OUTPUT.value or default_output(MODEL.value)
    results = eval_run.evaluate_segmenter(
      segmenter,
      DATA.value,
      segmenter.image_size,
      segmenter.num_parts,
      fit_split=FIT_SPLIT.value,
      test_split=SPLIT.value,
      max_fit_frames_per_video=FIT_FRAMES.value or None,
      max_test_frames_per_video=TEST_FRAMES.value or None,
      report_dir=output,
      batch_size=BATCH.value,
    )
  except CopartError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(results["table"])
  print(json.dumps(eval_run.headline(results), indent=2))
  print(f"report: {os.path.join(output, 'report.md')}")
  return 0


def run():
  app.run(main)


if __name__ == "__main__":
  run()
