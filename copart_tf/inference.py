"""`Segmenter`: the one inference path from uint8 images to part labels, for every caller.

  segmenter = Segmenter.load("exports/copart")      # newest version of an export base
  segmenter = Segmenter.load("exports/copart/3")    # one version
  segmenter = Segmenter.load("runs/taichi")         # a training run (latest checkpoint)
  segmenter = Segmenter.from_model(model)           # an in-memory `CoPartModel` (end of training)
  out = segmenter.segment(frames_uint8)             # uint8 [N, H, W, 3] -> dict of NumPy arrays
  labels = segmenter(frames_uint8)                  # uint8 [N, H, W, 3] -> uint8 [N, H, W]

Every backend runs the same computation as the ``serving_default`` signature
(`copart_tf.export.saved_model.ServingComputation`), so they return the same outputs: the
evaluation (`copart_tf.evaluate`, the end of `copart_tf.train`), `copart_tf.segment` and
`copart_tf.name_parts` all see what a served export returns.
"""

import os

import numpy as np
import tensorflow as tf

from copart_tf.errors import DataError, ModelError
from copart_tf.export import saved_model as saved_model_lib

OUTPUT_KEYS = ("part_labels", "part_centers", "part_affines", "foreground_fraction")


def _is_run_dir(path):
  from copart_tf.model import loading

  return os.path.isfile(os.path.join(path, loading.CONFIG_FILE))


class Segmenter:
  """Segments uint8 images into parts; build it with `Segmenter.load`.

  Attributes:
    part_names: K+1 names, ``[0]`` = background.
    num_parts: K.
    image_size: the model's input side S (inputs of any size are resized to it).
    path: what was loaded (a SavedModel version dir or a training run dir).
    version: the SavedModel version (None for checkpoints).
    model: the `CoPartModel` for checkpoint-backed segmenters (e.g. for `animate`), else None.
  """

  def __init__(self, fn, part_names, image_size, path, version=None, model=None, batch_size=16):
    self._fn = fn
    self.part_names = list(part_names)
    self.num_parts = len(self.part_names) - 1
    self.image_size = int(image_size)
    self.path = path
    self.version = version
    self.model = model
    self.batch_size = int(batch_size)

  @classmethod
  def load(cls, path, batch_size=16, include_masks=False):
    """Loads an exported SavedModel (version dir or export base) or a training run.

    Args:
      path: ``export_base``, ``export_base/<version>`` or a `copart_tf.train` ``--model_dir``.
      batch_size: images per model call in `segment` (bounds memory).
      include_masks: checkpoint backend only: also return ``part_masks`` (SavedModels return them
        when they were exported with ``--include_masks``).

    Returns:
      a `Segmenter`.

    Raises:
      ModelError: nothing loadable at `path` (the message says what was expected).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
      raise ModelError(f"{path}: no such directory (expected a SavedModel or a training run)")
    if _is_run_dir(path):
      return cls._from_checkpoint(path, batch_size, include_masks)
    return cls._from_saved_model(path, batch_size)

  @classmethod
  def from_model(cls, model, batch_size=16, include_masks=False, path=None):
    """Wraps an in-memory `CoPartModel` (same computation as the export).

    Args:
      model: a `CoPartModel`.
      batch_size: images per model call in `segment` (bounds memory).
      include_masks: also return ``part_masks``.
      path: recorded as `path` (e.g. the run dir the model came from), or None.

    Returns:
      a `Segmenter` whose `model` is `model`.
    """
    computation = saved_model_lib.ServingComputation(model, include_masks=include_masks)

    def run(images):
      return computation.serving_default(tf.convert_to_tensor(images))

    return cls(
      run,
      computation.part_names,
      computation.image_size,
      path,
      model=model,
      batch_size=batch_size,
    )

  @classmethod
  def _from_checkpoint(cls, model_dir, batch_size, include_masks):
    from copart_tf.model import loading

    model = loading.load_from_model_dir(model_dir)
    return cls.from_model(model, batch_size, include_masks, path=model_dir)

  @classmethod
  def _from_saved_model(cls, path, batch_size):
    version_dir, version = saved_model_lib.resolve_saved_model_dir(path)
    try:
      loaded = tf.saved_model.load(version_dir)
    except (OSError, ValueError, tf.errors.OpError) as error:
      raise ModelError(f"{version_dir}: cannot load SavedModel ({str(error)[:200]})") from None
    missing = [s for s in saved_model_lib.SIGNATURES if s not in loaded.signatures]
    if missing:
      raise ModelError(f"{version_dir}: not a copart export (missing signatures {missing})")
    meta = loaded.signatures[saved_model_lib.METADATA](dummy=tf.zeros([1], tf.int32))
    names = [n.decode("utf-8") for n in meta["part_names"].numpy()[0]]
    image_size = int(meta["image_size"].numpy()[0])
    signature = loaded.signatures[saved_model_lib.SERVING_DEFAULT]

    def run(images):
      return signature(images=tf.convert_to_tensor(images))

    segmenter = cls(run, names, image_size, version_dir, version=version, batch_size=batch_size)
    segmenter._loaded = loaded  # keeps the restored variables alive
    return segmenter

  def segment(self, images):
    """Segments uint8 images.

    Args:
      images: uint8 `[N, H, W, 3]` (or one `[H, W, 3]` image, returned with N = 1).

    Returns:
      dict of NumPy arrays: ``part_labels`` uint8 `[N, H, W]` (0 = background), ``part_centers``
      float32 `[N, K, 2]` (x, y pixels, 0 = centre of the first pixel), ``part_affines`` float32
      `[N, K, 2, 3]` (canonical frame -> pixels), ``foreground_fraction`` float32 `[N]`, and
      ``part_masks`` uint8 `[N, S, S, K+1]` if the model provides them.

    Raises:
      DataError: not uint8, wrong shape, or an empty image.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
      raise DataError(f"segment() needs uint8 images, got {images.dtype}")
    if images.ndim == 3:
      images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
      raise DataError(f"segment() needs [N, H, W, 3] images, got shape {images.shape}")
    if images.shape[1] == 0 or images.shape[2] == 0:
      raise DataError(f"segment() got empty images of shape {images.shape}")
    if images.shape[0] == 0:
      return self._empty(images.shape[1], images.shape[2])
    chunks = []
    for start in range(0, images.shape[0], self.batch_size):
      out = self._fn(images[start : start + self.batch_size])
      chunks.append({key: value.numpy() for key, value in out.items()})
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

  def _empty(self, height, width):
    k = self.num_parts
    return {
      "part_labels": np.zeros([0, height, width], np.uint8),
      "part_centers": np.zeros([0, k, 2], np.float32),
      "part_affines": np.zeros([0, k, 2, 3], np.float32),
      "foreground_fraction": np.zeros([0], np.float32),
    }

  def __call__(self, images):
    """Only the label maps: uint8 `[N, H, W, 3]` -> uint8 `[N, H, W]` (0 = background).

    The ``predict_fn`` of `copart_tf.evaluation.run` and `copart_tf.apps.naming`; raises like
    `segment`.
    """
    return self.segment(images)["part_labels"]
