"""Segments a video (or frame folder, strip, image) into parts: overlay video, frames and tracks.

`segment_video` is `python -m copart_tf.segment` without the flags. It streams: frames are read,
segmented and written batch by batch, track rows are appended as they come, so memory does not
grow with the video's length (see benchmarks/segment_memory.py).

Files written into the output folder:

- ``overlay.mp4`` (H.264 at the input's frame rate) unless ``video=False``; ``overlay.gif`` with
  ``gif=True``; ``frames/<index:06d>.png`` with ``frames=True``. A single-image input gives
  ``overlay.png`` instead of videos.
- ``tracks.json`` and ``tracks.csv``: see `copart_tf.apps.tracks` for the schema.
- ``legend.png``: each part's colour and name.
"""

import dataclasses
import os
import time

from PIL import Image

from copart_tf.apps import media, progress, rendering, tracks
from copart_tf.errors import ConfigError
from copart_tf.evaluation.report import part_palette

OVERLAY_VIDEO = "overlay.mp4"
OVERLAY_GIF = "overlay.gif"
OVERLAY_IMAGE = "overlay.png"
FRAMES_DIR = "frames"
LEGEND_IMAGE = "legend.png"
# Bytes of uint8 input per model call: large frames go through in smaller batches (TensorFlow
# converts them to float32 before resizing, 4x this).
BATCH_BYTES = 48 * 2**20


@dataclasses.dataclass
class SegmentOptions:
  """Options of `segment_video` (the CLI's flags).

  Attributes:
    alpha: overlay strength in [0, 1].
    video: write overlay.mp4.
    gif: write overlay.gif.
    frames: write frames/<index>.png.
    axes: draw each part's centre and axes from its pose T_k.
    legend: append a part-name legend panel to the right of every frame.
    batch_size: frames per model call (fewer for large frames, see `BATCH_BYTES`).
    max_side: frames with a longer side are downscaled to it first (warning).
    fps: output frame rate (None: the input's).
    strip: read a png/jpg input as a horizontal strip of square frames.
    axis_scale: drawn axis length multiplier.
    show_progress: progress bar / lines on stderr.
  """

  alpha: float = 0.6
  video: bool = True
  gif: bool = False
  frames: bool = False
  axes: bool = False
  legend: bool = False
  batch_size: int = 8
  max_side: int = media.DEFAULT_MAX_SIDE
  fps: float | None = None
  strip: bool = False
  axis_scale: float = rendering.DEFAULT_AXIS_SCALE
  show_progress: bool = True

  def validate(self):
    if not 0.0 <= self.alpha <= 1.0:
      raise ConfigError(f"--alpha must be in [0, 1], got {self.alpha}")
    if self.batch_size < 1:
      raise ConfigError(f"--batch_size must be >= 1, got {self.batch_size}")
    if not 16 <= self.max_side <= 4096:  # 4096: the export's largest accepted side
      raise ConfigError(f"--max_side must be in [16, 4096], got {self.max_side}")
    if self.fps is not None and self.fps <= 0:
      raise ConfigError(f"--fps must be > 0, got {self.fps}")


def model_description(segmenter):
  """What tracks.json says about the model."""
  return {
    "model": os.path.abspath(segmenter.path) if segmenter.path else None,
    "model_kind": "checkpoint" if segmenter.model is not None else "saved_model",
    "model_version": segmenter.version,
    "image_size": segmenter.image_size,
    "num_parts": segmenter.num_parts,
  }


def segment_video(segmenter, input_path, output_dir, options=None, warn=None):
  """Segments every frame of `input_path` and writes overlays and tracks into `output_dir`.

  Args:
    segmenter: a `copart_tf.inference.Segmenter`.
    input_path: video file, frame folder, frame strip (``options.strip``) or image; or an
      `media.InputFrames` opened by the caller (closed here).
    output_dir: created if missing; existing files of the same names are overwritten.
    options: `SegmentOptions`.
    warn: callable(str) for warnings (default: ignore).

  Returns:
    dict: ``num_frames``, ``fps``, ``seconds``, ``frames_per_second``, ``files`` (name -> path),
    ``frame_size`` and ``output_frame_size`` (H, W).

  Raises:
    DataError: unreadable / empty input.
    ConfigError: bad options.
  """
  options = options or SegmentOptions()
  options.validate()
  warn = warn or (lambda message: None)
  if isinstance(input_path, media.InputFrames):
    frames = input_path
  else:
    frames = media.open_input(input_path, max_side=options.max_side, strip=options.strip, warn=warn)
  try:
    return _segment(segmenter, frames, output_dir, options, warn)
  finally:
    frames.close()


def _segment(segmenter, frames, output_dir, options, warn):
  start_time = time.time()
  input_size, size = frames.peek_size()  # decodes the first frame: fails early on bad input
  os.makedirs(output_dir, exist_ok=True)
  num_parts = segmenter.num_parts
  names = segmenter.part_names
  palette = part_palette(num_parts)
  fps = float(options.fps or frames.fps)
  single = frames.kind == "image"

  Image.fromarray(rendering.legend_image(names, palette)).save(
    os.path.join(output_dir, LEGEND_IMAGE)
  )
  legend = rendering.legend_panel(names, palette, size[0]) if options.legend else None
  files = {"tracks_json": os.path.join(output_dir, tracks.JSON_NAME)}
  files["tracks_csv"] = os.path.join(output_dir, tracks.CSV_NAME)
  files["legend"] = os.path.join(output_dir, LEGEND_IMAGE)
  writers = []
  if single:
    files["overlay_image"] = os.path.join(output_dir, OVERLAY_IMAGE)
  else:
    if options.video:
      files["video"] = os.path.join(output_dir, OVERLAY_VIDEO)
      writers.append(media.VideoWriter(files["video"], fps))
    if options.gif:
      files["gif"] = os.path.join(output_dir, OVERLAY_GIF)
      writers.append(media.VideoWriter(files["gif"], fps))
  if options.frames and not single:
    files["frames"] = os.path.join(output_dir, FRAMES_DIR)
    writers.append(media.FrameWriter(files["frames"]))

  output_size = (size[0], size[1] + (legend.shape[1] if legend is not None else 0))
  header = {
    **model_description(segmenter),
    "palette": palette.tolist(),
    "input": os.path.abspath(frames.path),
    "input_kind": frames.kind,
    "fps": fps,
    "frame_size": list(input_size),
    "processed_frame_size": list(size),
    "output_frame_size": list(output_size),
    "coordinates": "input pixels: x right, y down, 0 = centre of the first pixel",
  }
  track_writer = tracks.TrackWriter(output_dir, header, names)
  frame_bytes = size[0] * size[1] * 3
  batch_size = max(1, min(options.batch_size, BATCH_BYTES // frame_bytes))
  bar = progress.FrameProgress(frames.num_frames, "segment", enabled=options.show_progress)
  outputs = media.Outputs(writers)
  done = 0
  try:
    for start, batch in frames.batches(batch_size):
      out = segmenter.segment(batch)
      labels = out["part_labels"]
      affines_norm = tracks.pixel_to_normalized_affines(out["part_affines"], *size)
      affines_input = tracks.normalized_to_pixel_affines(affines_norm, *input_size)
      areas = tracks.part_areas(labels, num_parts)
      for i in range(batch.shape[0]):
        index = start + i
        picture = rendering.render_overlay(
          batch[i],
          labels[i],
          palette,
          alpha=options.alpha,
          normalized_affines=affines_norm[i] if options.axes else None,
          axis_scale=options.axis_scale,
        )
        if legend is not None:
          picture = rendering.append_panel(picture, legend)
        if single:
          Image.fromarray(picture).save(files["overlay_image"])
        outputs.write(picture)
        track_writer.add(
          index,
          index / fps,
          centers=affines_input[i, :, :, 2],
          affines=affines_input[i],
          normalized_affines=affines_norm[i],
          area=areas[i],
          foreground_fraction=out["foreground_fraction"][i],
        )
      done += batch.shape[0]
      bar.update(done)
    outputs.close()
  except BaseException:
    track_writer.abort()
    try:
      outputs.close()
    except Exception:  # the original error matters more than a writer failing to finish
      pass
    raise
  seconds = time.time() - start_time
  track_writer.close({"seconds": round(seconds, 3)})
  bar.close()
  return {
    "num_frames": done,
    "fps": fps,
    "seconds": seconds,
    "frames_per_second": done / seconds if seconds > 0 else float("nan"),
    "files": files,
    "frame_size": tuple(input_size),
    "output_frame_size": output_size,
  }


def describe_outputs(result):
  """Short human-readable summary lines of `segment_video`'s result."""
  lines = [
    f"segmented {result['num_frames']} frames at {result['frames_per_second']:.1f} frames/s "
    f"({result['seconds']:.1f} s)"
  ]
  for key, path in result["files"].items():
    lines.append(f"  {key}: {path}")
  return lines
