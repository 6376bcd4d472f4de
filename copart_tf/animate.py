"""Motion transfer: re-poses a source image's parts with every frame of a driving video.

  python -m copart_tf.animate --model=RUN_DIR_or_SAVED_MODEL --source=IMAGE --driving=VIDEO \
      --output=DIR [--gif] [--frames] [--parts] [--panel_size=256] [--batch_size=8]

The source's part maps are moved to the canonical frame, re-posed by each driving frame's part
transforms and assembled by the decoder (`CoPartModel.animate`; the reference's
"driving_image"). Writes ``animation.mp4`` into --output: source | result | driving side by side
(each panel the model's S x S view, or --panel_size), at the driving video's frame rate; with
--parts a fourth panel shows the result's part labels. Also ``animation.gif`` with --gif,
``frames/000000.png ...`` with --frames, and ``animation.json``.

--model: a training run dir, or an exported SavedModel that has the ``animate`` signature
(exports made by copart_tf.export include it); an older export without it fails with a message
asking for the run dir. Bad input: ``error: <message>``, exit status 2.
"""

from absl import flags

from copart_tf.apps import cli

MODEL = flags.DEFINE_string(
  "model", None, "Training run dir, or an exported SavedModel with the 'animate' signature."
)
SOURCE = flags.DEFINE_string("source", None, "Source image (a video/folder: its first frame).")
DRIVING = flags.DEFINE_string("driving", None, "Driving video file, frame folder or strip.")
OUTPUT = flags.DEFINE_string("output", None, "Output folder (created if missing).")
VIDEO = flags.DEFINE_bool("video", True, "Write animation.mp4 (--novideo to skip).")
GIF = flags.DEFINE_bool("gif", False, "Also write animation.gif.")
FRAMES = flags.DEFINE_bool("frames", False, "Also write every frame as frames/<index>.png.")
PARTS = flags.DEFINE_bool("parts", False, "Add a fourth panel: the result's part labels.")
CAPTIONS = flags.DEFINE_bool("captions", True, "Caption bar above the panels.")
PANEL_SIZE = flags.DEFINE_integer("panel_size", 0, "Side of each panel (0 = the model size).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Driving frames per model call.")
MAX_SIDE = flags.DEFINE_integer(
  "max_side", 2048, "Inputs with a longer side are downscaled to it before the model."
)
FPS = flags.DEFINE_float("fps", 0.0, "Output frame rate (0 = the driving video's).")
QUIET = flags.DEFINE_bool("quiet", False, "No progress output.")


def main():
  cli.require(MODEL.value, "--model is required (a training run dir or an exported SavedModel)")
  cli.require(SOURCE.value, "--source is required (an image)")
  cli.require(DRIVING.value, "--driving is required (a video file or frame folder)")
  cli.require(OUTPUT.value, "--output is required (a folder)")
  cli.require(
    16 <= MAX_SIDE.value <= 4096, f"--max_side must be in [16, 4096], got {MAX_SIDE.value}"
  )
  from copart_tf.apps import media

  # Inputs are checked before the model is loaded: a bad file fails in a second.
  media.read_single_image(SOURCE.value, max_side=MAX_SIDE.value)
  driving = media.open_input(DRIVING.value, max_side=MAX_SIDE.value, warn=cli.warn)
  try:
    driving.peek_size()
    from copart_tf.apps import animation  # imports TensorFlow

    options = animation.AnimateOptions(
      video=VIDEO.value,
      gif=GIF.value,
      frames=FRAMES.value,
      parts=PARTS.value,
      captions=CAPTIONS.value,
      panel_size=PANEL_SIZE.value or None,
      batch_size=BATCH_SIZE.value,
      max_side=MAX_SIDE.value,
      fps=FPS.value or None,
      show_progress=not QUIET.value,
    )
    options.validate()
    animator = animation.Animator.load(MODEL.value)
    result = animation.animate_video(
      animator, SOURCE.value, driving, OUTPUT.value, options=options, warn=cli.warn
    )
  finally:
    driving.close()
  print(
    f"animated {result['num_frames']} frames at {result['frames_per_second']:.1f} frames/s "
    f"({result['seconds']:.1f} s)"
  )
  for key, path in result["files"].items():
    print(f"  {key}: {path}")
  return 0


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
