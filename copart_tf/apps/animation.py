"""Motion transfer: a source image's parts re-posed by every frame of a driving video.

For each driving frame the encoder gives the driving part poses T_k^d; the source's part maps are
moved to the canonical frame with (T_k^s)^-1, re-posed with T_k^d, decoded and assembled
(`CoPartModel.animate`, the reference's "driving_image"). `animate_video` is
`python -m copart_tf.animate` without the flags.

Models (`Animator.load`):

- a training run dir: the Keras model is restored from the latest checkpoint;
- an exported SavedModel (base or version dir) that has the ``animate`` signature
  (`copart_tf.export.saved_model`, exported by default since that signature exists). An older
  export without it is refused with a message saying to pass the run dir or re-export.

Both run the same graph (`ServingComputation.animate`): inputs are resized to the model size S
exactly as in serving, the result is S x S.

Files written into the output folder: ``animation.mp4`` (source | result | driving side by side,
at the driving video's frame rate; with ``parts=True`` a fourth panel shows the result's part
labels), ``animation.gif`` with ``gif=True``, ``frames/<index:06d>.png`` with ``frames=True``,
and ``animation.json`` (model, sizes, frame count, fps, panel order).
"""

import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf

from copart_tf.apps import media, progress, rendering
from copart_tf.errors import ConfigError, ModelError
from copart_tf.evaluation.report import part_palette
from copart_tf.export import saved_model as saved_model_lib
from copart_tf.training import visualize

ANIMATION_VIDEO = "animation.mp4"
ANIMATION_GIF = "animation.gif"
ANIMATION_JSON = "animation.json"
FRAMES_DIR = "frames"


class Animator:
  """Runs the ``animate`` computation of a run dir's model or of an export.

  Attributes:
    image_size: the model's input side S.
    num_parts: K.
    part_names: K+1 names.
    path: what was loaded.
    kind: ``"checkpoint"`` or ``"saved_model"``.
  """

  def __init__(self, fn, image_size, part_names, path, kind):
    self._fn = fn
    self.image_size = int(image_size)
    self.part_names = list(part_names)
    self.num_parts = len(self.part_names) - 1
    self.path = path
    self.kind = kind

  @classmethod
  def load(cls, path):
    """Loads a training run dir or an exported SavedModel with an ``animate`` signature.

    Raises:
      ModelError: nothing loadable, or an export without the ``animate`` signature.
    """
    from copart_tf.model import loading

    path = os.fspath(path)
    if not os.path.isdir(path):
      raise ModelError(f"{path}: no such directory (expected a training run dir or a SavedModel)")
    if os.path.isfile(os.path.join(path, loading.CONFIG_FILE)):
      return cls.from_model(loading.load_from_model_dir(path), path=path)
    version_dir, _ = saved_model_lib.resolve_saved_model_dir(path)
    try:
      loaded = tf.saved_model.load(version_dir)
    except (OSError, ValueError, tf.errors.OpError) as error:
      raise ModelError(f"{version_dir}: cannot load SavedModel ({str(error)[:200]})") from None
    if saved_model_lib.ANIMATE not in loaded.signatures:
      raise ModelError(
        f"{version_dir}: this SavedModel has no '{saved_model_lib.ANIMATE}' signature (exported "
        "before it existed): pass the training run dir as --model, or re-export the run with "
        "python -m copart_tf.export"
      )
    if saved_model_lib.METADATA not in loaded.signatures:
      raise ModelError(f"{version_dir}: not a copart export (no metadata signature)")
    meta = loaded.signatures[saved_model_lib.METADATA](dummy=tf.zeros([1], tf.int32))
    names = [n.decode("utf-8") for n in meta["part_names"].numpy()[0]]
    image_size = int(meta["image_size"].numpy()[0])
    signature = loaded.signatures[saved_model_lib.ANIMATE]

    def run(source, driving):
      return signature(source=tf.convert_to_tensor(source), driving=tf.convert_to_tensor(driving))

    animator = cls(run, image_size, names, version_dir, "saved_model")
    animator._loaded = loaded  # keeps the restored variables alive
    return animator

  @classmethod
  def from_model(cls, model, path=None):
    """Wraps an in-memory `CoPartModel` (the same graph as the exported signature)."""
    computation = saved_model_lib.ServingComputation(model)

    def run(source, driving):
      return computation.animate(tf.convert_to_tensor(source), tf.convert_to_tensor(driving))

    return cls(run, computation.image_size, computation.part_names, path, "checkpoint")

  def animate(self, source, driving):
    """Re-poses the source's parts by each driving frame.

    Args:
      source: uint8 `[H, W, 3]` (one image, used for every driving frame).
      driving: uint8 `[N, H', W', 3]`.

    Returns:
      dict of NumPy arrays: ``image`` uint8 `[N, S, S, 3]`, ``part_labels`` uint8 `[N, S, S]`.
    """
    driving = np.asarray(driving, np.uint8)
    sources = np.broadcast_to(
      np.asarray(source, np.uint8)[None], (driving.shape[0],) + source.shape
    )
    out = self._fn(np.ascontiguousarray(sources), driving)
    return {key: value.numpy() for key, value in out.items()}


@dataclasses.dataclass
class AnimateOptions:
  """Options of `animate_video` (the CLI's flags).

  Attributes:
    video: write animation.mp4.
    gif: write animation.gif.
    frames: write frames/<index>.png.
    parts: add a fourth panel: the result's part labels over the result.
    captions: caption bar above the panels.
    panel_size: side of each panel (default: the model size S).
    batch_size: driving frames per model call.
    max_side: inputs with a longer side are downscaled to it first (warning).
    fps: output frame rate (None: the driving video's).
    show_progress: progress output on stderr.
  """

  video: bool = True
  gif: bool = False
  frames: bool = False
  parts: bool = False
  captions: bool = True
  panel_size: int | None = None
  batch_size: int = 8
  max_side: int = media.DEFAULT_MAX_SIDE
  fps: float | None = None
  show_progress: bool = True

  def validate(self):
    if self.batch_size < 1:
      raise ConfigError(f"--batch_size must be >= 1, got {self.batch_size}")
    if self.panel_size is not None and not 16 <= self.panel_size <= 2048:
      raise ConfigError(f"--panel_size must be in [16, 2048], got {self.panel_size}")
    if not 16 <= self.max_side <= 4096:  # 4096: the export's largest accepted side
      raise ConfigError(f"--max_side must be in [16, 4096], got {self.max_side}")
    if self.fps is not None and self.fps <= 0:
      raise ConfigError(f"--fps must be > 0, got {self.fps}")
    if not (self.video or self.gif or self.frames):
      raise ConfigError("nothing to write: --novideo without --gif or --frames")


def animate_video(animator, source_path, driving_path, output_dir, options=None, warn=None):
  """Animates the source image with the driving video and writes the side-by-side video.

  Args:
    animator: an `Animator`.
    source_path: an image (or a video / frame folder: its first frame), or the image itself
      (uint8 `[H, W, 3]`).
    driving_path: a video file, frame folder or frame strip, or a `media.InputFrames` opened by
      the caller (closed here).
    output_dir: created if missing.
    options: `AnimateOptions`.
    warn: callable(str) for warnings.

  Returns:
    dict: ``num_frames``, ``fps``, ``seconds``, ``frames_per_second``, ``files``.

  Raises:
    DataError: unreadable source or driving video.
    ConfigError: bad options.
  """
  options = options or AnimateOptions()
  options.validate()
  warn = warn or (lambda message: None)
  start_time = time.time()
  if isinstance(source_path, np.ndarray):
    source, source_path = source_path, None
  else:
    source = media.read_single_image(source_path, max_side=options.max_side, warn=warn)
  if isinstance(driving_path, media.InputFrames):
    driving = driving_path
  else:
    driving = media.open_input(driving_path, max_side=options.max_side, warn=warn)
  try:
    driving.peek_size()
    os.makedirs(output_dir, exist_ok=True)
    fps = float(options.fps or driving.fps)
    size = int(options.panel_size or animator.image_size)
    palette = part_palette(animator.num_parts)
    captions = ["source", "result", "driving"] + (["result parts"] if options.parts else [])
    files = {"json": os.path.join(output_dir, ANIMATION_JSON)}
    writers = []
    if options.video:
      files["video"] = os.path.join(output_dir, ANIMATION_VIDEO)
      writers.append(media.VideoWriter(files["video"], fps))
    if options.gif:
      files["gif"] = os.path.join(output_dir, ANIMATION_GIF)
      writers.append(media.VideoWriter(files["gif"], fps))
    if options.frames:
      files["frames"] = os.path.join(output_dir, FRAMES_DIR)
      writers.append(media.FrameWriter(files["frames"]))
    bar = progress.FrameProgress(driving.num_frames, "animate", enabled=options.show_progress)
    done = 0
    with media.Outputs(writers) as outputs:
      for _, batch in driving.batches(options.batch_size):
        out = animator.animate(source, batch)
        for i in range(batch.shape[0]):
          panels = [source, out["image"][i], batch[i]]
          if options.parts:
            panels.append(
              visualize.overlay_parts(out["image"][i], out["part_labels"][i], palette=palette)
            )
          picture = rendering.side_by_side(
            panels, captions if options.captions else None, size=size
          )
          outputs.write(picture)
        done += batch.shape[0]
        bar.update(done)
    bar.close()
    seconds = time.time() - start_time
    info = {
      "model": os.path.abspath(animator.path) if animator.path else None,
      "model_kind": animator.kind,
      "image_size": animator.image_size,
      "part_names": animator.part_names,
      "source": os.path.abspath(os.fspath(source_path)) if source_path else None,
      "driving": os.path.abspath(driving.path),
      "fps": fps,
      "num_frames": done,
      "panels": captions,
      "panel_size": size,
      "frame_size": list(picture.shape[:2]),
      "seconds": round(seconds, 3),
    }
    with open(files["json"], "w") as f:
      json.dump(info, f, indent=2)
  finally:
    driving.close()
  return {
    "num_frames": done,
    "fps": fps,
    "seconds": seconds,
    "frames_per_second": done / seconds if seconds > 0 else float("nan"),
    "files": files,
  }
