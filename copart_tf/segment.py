"""Segments a video into parts: an overlay video and per-frame part tracks.

  python -m copart_tf.segment --model=SAVED_MODEL_or_RUN_DIR --input=VIDEO|FRAME_DIR|IMAGE \
      --output=DIR [--alpha=0.6] [--gif] [--frames] [--axes] [--legend] [--batch_size=8]

--model is an exported SavedModel (``export_base`` or ``export_base/<version>``) or a training
run dir (latest checkpoint). Writes into --output:

- ``overlay.mp4``: every frame with its parts coloured (fixed colour per part index, background
  uncoloured), at the input's frame rate; ``overlay.gif`` with --gif; ``frames/000000.png ...``
  with --frames; a single image input gives ``overlay.png`` instead.
- ``tracks.json`` / ``tracks.csv``: each part's centre (pixels), rotation (degrees) and scale per
  frame, plus the part names and the model's image size (schema: copart_tf/apps/tracks.py).
- ``legend.png``: part colours and names (--legend also draws it next to every frame).

Long videos are streamed in batches (memory does not grow with length). Frames with a side above
--max_side are downscaled first (with a warning). Bad input: ``error: <message>``, exit status 2.
"""

from absl import flags

from copart_tf.apps import cli

MODEL = flags.DEFINE_string(
  "model", None, "Exported SavedModel (base or version) or training run dir."
)
INPUT = flags.DEFINE_string("input", None, "Video file (mp4/mov/gif/...), frame folder or image.")
OUTPUT = flags.DEFINE_string("output", None, "Output folder (created if missing).")
ALPHA = flags.DEFINE_float("alpha", 0.6, "Overlay strength in [0, 1] (0 = no colour).")
VIDEO = flags.DEFINE_bool("video", True, "Write overlay.mp4 (--novideo to skip).")
GIF = flags.DEFINE_bool("gif", False, "Also write overlay.gif.")
FRAMES = flags.DEFINE_bool("frames", False, "Also write every overlay frame as frames/<index>.png.")
AXES = flags.DEFINE_bool("axes", False, "Draw each part's centre and axes from its pose T_k.")
AXIS_SCALE = flags.DEFINE_float("axis_scale", 0.25, "Length of the drawn axes (pose units).")
LEGEND = flags.DEFINE_bool("legend", False, "Draw a part-name legend to the right of every frame.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Frames per model call.")
MAX_SIDE = flags.DEFINE_integer(
  "max_side", 2048, "Frames with a longer side are downscaled to it before segmentation."
)
FPS = flags.DEFINE_float("fps", 0.0, "Output frame rate (0 = the input's; 25 for folders/images).")
STRIP = flags.DEFINE_bool("strip", False, "Read a png/jpg --input as a strip of square frames.")
QUIET = flags.DEFINE_bool("quiet", False, "No progress output.")


def main():
  cli.require(MODEL.value, "--model is required (an exported SavedModel or a training run dir)")
  cli.require(INPUT.value, "--input is required (a video file, frame folder or image)")
  cli.require(OUTPUT.value, "--output is required (a folder)")
  cli.require(
    16 <= MAX_SIDE.value <= 4096, f"--max_side must be in [16, 4096], got {MAX_SIDE.value}"
  )
  from copart_tf.apps import media

  # The input is checked before the model is loaded: a bad video fails in a second.
  frames = media.open_input(INPUT.value, max_side=MAX_SIDE.value, strip=STRIP.value, warn=cli.warn)
  try:
    frames.peek_size()
    from copart_tf.apps import segmentation  # imports TensorFlow
    from copart_tf.inference import Segmenter

    options = segmentation.SegmentOptions(
      alpha=ALPHA.value,
      video=VIDEO.value,
      gif=GIF.value,
      frames=FRAMES.value,
      axes=AXES.value,
      legend=LEGEND.value,
      batch_size=BATCH_SIZE.value,
      max_side=MAX_SIDE.value,
      fps=FPS.value or None,
      strip=STRIP.value,
      axis_scale=AXIS_SCALE.value,
      show_progress=not QUIET.value,
    )
    options.validate()
    segmenter = Segmenter.load(MODEL.value, batch_size=options.batch_size)
    result = segmentation.segment_video(
      segmenter, frames, OUTPUT.value, options=options, warn=cli.warn
    )
  finally:
    frames.close()
  print("\n".join(segmentation.describe_outputs(result)))
  return 0


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
