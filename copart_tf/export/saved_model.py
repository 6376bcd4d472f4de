"""SavedModel export with TF Serving signatures (DESIGN.md §2, §9; serving/README.md).

`export(model, export_base)` writes ``export_base/<version>/`` in the layout tensorflow_model_server
watches::

  export_base/<version>/saved_model.pb
  export_base/<version>/variables/variables.{index,data-00000-of-00001}
  export_base/<version>/assets/part_names.txt                   K+1 names, one a line
  export_base/<version>/assets.extra/tf_serving_warmup_requests  PredictionLog TFRecords
  export_base/<version>/assets.extra/copart_export.json          what was exported

The version is written into a hidden temporary directory inside `export_base` (its name is not a
number, so servers ignore it) and then renamed in one `os.rename`, so a server polling
`export_base` never sees a half-written version.

Signatures (only core TF ops; the warp is pure TF):

- ``serving_default``: ``images`` uint8 `[N, H, W, 3]`, any H x W ->
  ``part_labels`` uint8 `[N, H, W]` (0 = background), ``part_centers`` float32 `[N, K, 2]`,
  ``part_affines`` float32 `[N, K, 2, 3]`, ``foreground_fraction`` float32 `[N]`
  (+ ``part_masks`` uint8 `[N, S, S, K+1]` when exported with `include_masks`).
- ``serve_encoded``: ``images`` string `[N]` (PNG / JPEG / GIF / BMP bytes) -> the same keys, but
  ``part_labels`` (and ``part_masks``) at the model size `[N, S, S]`, plus ``image_sizes`` int32
  `[N, 2]` (height, width of each decoded image); centres and affines are in each image's own
  pixels.
- ``metadata``: ``dummy`` int32 `[N]` (any values) -> ``part_names`` string `[N, K+1]`,
  ``num_parts``, ``image_size``, ``max_image_side`` int32 `[N]` (identical rows: TF Serving's
  batching needs a batch dimension on every input and output).
- ``animate`` (optional, `OPTIONAL_SIGNATURES`; exports made before it existed lack it):
  ``source`` and ``driving`` uint8 `[N, H, W, 3]` (same N, any sizes) -> ``image`` uint8
  `[N, S, S, 3]` (the source's parts re-posed by the driving frame's part poses and assembled,
  `CoPartModel.animate`) and ``part_labels`` uint8 `[N, S, S]` of that image.

Pixel coordinates: (x, y), 0 = centre of the first pixel (`copart_tf.ops.grid`). A pose in pixels
``[A' | t']`` maps canonical-frame coordinates ``c`` (the model's normalised part frame, [-1, 1]^2)
to input pixels: ``p = A' c + t'``; ``t'`` is the part centre.
"""

import json
import os
import re
import shutil
import stat
import tempfile

import keras
import numpy as np
import tensorflow as tf

from copart_tf.data import augment as augment_lib
from copart_tf.errors import ModelError

SERVING_DEFAULT = "serving_default"
SERVE_ENCODED = "serve_encoded"
METADATA = "metadata"
SIGNATURES = (SERVING_DEFAULT, SERVE_ENCODED, METADATA)
# Exported too, but not required of a copart export (older versions lack them).
ANIMATE = "animate"
OPTIONAL_SIGNATURES = (ANIMATE,)

DEFAULT_MODEL_NAME = "copart"
DEFAULT_MAX_IMAGE_SIDE = 4096
PART_NAMES_ASSET = "part_names.txt"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
EXPORT_INFO_FILE = "copart_export.json"
SAVED_MODEL_FILE = "saved_model.pb"
_TMP_PREFIX = ".tmp-export-"
_VERSION_RE = re.compile(r"^[0-9]+$")


# ------------------------------------------------------------------------------ version dirs


def list_versions(export_base):
  """Versions under `export_base`: integer-named subdirectories holding a saved_model.pb.

  Args:
    export_base: the directory tensorflow_model_server's `base_path` points at.

  Returns:
    sorted list of ints (empty if the directory is missing).
  """
  try:
    names = os.listdir(export_base)
  except OSError:
    return []
  versions = []
  for name in names:
    if _VERSION_RE.match(name) and os.path.isfile(
      os.path.join(export_base, name, SAVED_MODEL_FILE)
    ):
      versions.append(int(name))
  return sorted(versions)


def next_version(export_base):
  """The version `export` picks by default: the largest existing one + 1, or 1."""
  versions = list_versions(export_base)
  return versions[-1] + 1 if versions else 1


def resolve_saved_model_dir(path):
  """A SavedModel version dir, or the newest version of an export base.

  Args:
    path: ``export_base/<version>`` or ``export_base``.

  Returns:
    (version dir, version int or None when `path` itself holds a saved_model.pb and its name is
    not a number).

  Raises:
    ModelError: neither a SavedModel nor an export base with versions.
  """
  path = os.fspath(path)
  if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
    name = os.path.basename(os.path.normpath(path))
    return path, (int(name) if _VERSION_RE.match(name) else None)
  versions = list_versions(path)
  if not versions:
    raise ModelError(
      f"{path}: no {SAVED_MODEL_FILE} here and no numbered version subdirectory holding one"
    )
  return os.path.join(path, str(versions[-1])), versions[-1]


# ------------------------------------------------------------------------------ computation


def _pixel_scale(heights, widths):
  """Per-image (W/2, H/2) and ((W-1)/2, (H-1)/2): normalised -> pixel is ``p = s * u + o``.

  Args:
    heights: float32 `[N]`.
    widths: float32 `[N]`.

  Returns:
    (scale `[N, 1, 2]`, offset `[N, 1, 2]`).
  """
  scale = tf.stack([widths, heights], axis=-1)[:, None, :] / 2.0
  return scale, scale - 0.5


def poses_to_pixels(centers, affines, heights, widths):
  """Normalised part poses -> input pixels (x, y; 0 = centre of the first pixel).

  Args:
    centers: `[N, K, 2]` normalised (x, y).
    affines: `[N, K, 2, 3]` canonical -> normalised image coordinates.
    heights: float32 `[N]` input heights H.
    widths: float32 `[N]` input widths W.

  Returns:
    (centers `[N, K, 2]` pixels, affines `[N, K, 2, 3]` canonical -> pixels).
  """
  scale, offset = _pixel_scale(heights, widths)
  centers_px = centers * scale + offset
  linear = affines[..., :2] * scale[..., :, None]  # rows scaled: diag(W/2, H/2) @ A
  shift = affines[..., 2] * scale + offset
  return centers_px, tf.concat([linear, shift[..., None]], axis=-1)


def _check_sizes(heights, widths, max_side, what="images"):
  """Assert ops: every side in [1, max_side] (INVALID_ARGUMENT in TF Serving)."""
  message = f"{what}: height and width must be between 1 and {max_side} pixels"
  return [
    tf.debugging.assert_positive(heights, message=message),
    tf.debugging.assert_positive(widths, message=message),
    tf.debugging.assert_less_equal(heights, max_side, message=message),
    tf.debugging.assert_less_equal(widths, max_side, message=message),
  ]


class ServingComputation:
  """The serving signatures' computations around a `CoPartModel` (graph functions).

  Used by `export` (traced into the SavedModel) and by checkpoint-backed `Segmenter`s, so both
  backends compute exactly the same thing. Not a `tf.Module`: the export saves only the variables
  the traced functions capture.

  Args:
    model: a built `CoPartModel`.
    include_masks: also return soft masks ``part_masks`` uint8 `[N, S, S, K+1]` (round(255 M)).
    max_image_side: largest accepted input side (assertion inside the graph).
  """

  def __init__(self, model, include_masks=False, max_image_side=DEFAULT_MAX_IMAGE_SIDE):
    self.model = model
    self.include_masks = bool(include_masks)
    self.max_image_side = int(max_image_side)
    self.num_parts = int(model.num_parts)
    self.image_size = int(model.image_size)
    self.part_names = [str(n) for n in model.part_names]
    self.serving_default = tf.function(
      self._serving_default,
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    self.serve_encoded = tf.function(
      self._serve_encoded, input_signature=[tf.TensorSpec([None], tf.string, name="images")]
    )
    self.metadata = tf.function(
      self._metadata, input_signature=[tf.TensorSpec([None], tf.int32, name="dummy")]
    )
    self.animate = tf.function(
      self._animate,
      input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="source"),
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="driving"),
      ],
    )

  def functions(self, include_animate=True):
    """{signature name: tf.function} (the required `SIGNATURES`, then ``animate``)."""
    functions = {
      SERVING_DEFAULT: self.serving_default,
      SERVE_ENCODED: self.serve_encoded,
      METADATA: self.metadata,
    }
    if include_animate:
      functions[ANIMATE] = self.animate
    return functions

  def _run_model(self, float_images):
    """Model-size float images `[N, S, S, 3]` -> labels int32, masks, normalised poses."""
    out = self.model(float_images, training=False)
    return out["part_labels"], out["masks"], out["centers"], out["affines"]

  def _masks_uint8(self, masks):
    return tf.cast(tf.round(tf.clip_by_value(masks, 0.0, 1.0) * 255.0), tf.uint8)

  def _serving_default(self, images):
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    checks = _check_sizes(height, width, self.max_image_side)
    checks.append(tf.debugging.assert_positive(batch, message="images: empty batch (N = 0)"))
    with tf.control_dependencies(checks):
      resized = augment_lib.resize_image(images, self.image_size)
    labels, masks, centers, affines = self._run_model(resized)
    labels = tf.image.resize(labels[..., None], [height, width], method="nearest")[..., 0]
    heights = tf.fill([batch], tf.cast(height, tf.float32))
    widths = tf.fill([batch], tf.cast(width, tf.float32))
    centers_px, affines_px = poses_to_pixels(centers, affines, heights, widths)
    out = {
      "part_labels": tf.cast(labels, tf.uint8),
      "part_centers": centers_px,
      "part_affines": affines_px,
      "foreground_fraction": tf.reduce_mean(tf.cast(labels > 0, tf.float32), axis=[1, 2]),
    }
    if self.include_masks:
      out["part_masks"] = self._masks_uint8(masks)
    return out

  def _decode_one(self, data):
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    size = tf.shape(image)[:2]
    with tf.control_dependencies(_check_sizes(size[0], size[1], self.max_image_side)):
      resized = augment_lib.resize_image(image, self.image_size)
    return resized, size

  def _serve_encoded(self, images):
    with tf.control_dependencies(
      [tf.debugging.assert_positive(tf.size(images), message="images: empty batch (N = 0)")]
    ):
      images = tf.identity(images)
    s = self.image_size
    resized, sizes = tf.map_fn(
      self._decode_one,
      images,
      fn_output_signature=(tf.TensorSpec([s, s, 3], tf.float32), tf.TensorSpec([2], tf.int32)),
    )
    labels, masks, centers, affines = self._run_model(resized)
    sizes_f = tf.cast(sizes, tf.float32)
    centers_px, affines_px = poses_to_pixels(centers, affines, sizes_f[:, 0], sizes_f[:, 1])
    out = {
      "part_labels": tf.cast(labels, tf.uint8),
      "part_centers": centers_px,
      "part_affines": affines_px,
      "foreground_fraction": tf.reduce_mean(tf.cast(labels > 0, tf.float32), axis=[1, 2]),
      "image_sizes": sizes,
    }
    if self.include_masks:
      out["part_masks"] = self._masks_uint8(masks)
    return out

  def _animate(self, source, driving):
    """Source parts re-posed by the driving poses (the ``animate`` signature).

    Args:
      source: uint8 `[N, H, W, 3]`.
      driving: uint8 `[N, H', W', 3]` (same N).

    Returns:
      dict: ``image`` uint8 `[N, S, S, 3]`, ``part_labels`` uint8 `[N, S, S]`.
    """
    src_shape, drv_shape = tf.shape(source), tf.shape(driving)
    checks = _check_sizes(src_shape[1], src_shape[2], self.max_image_side, "source")
    checks += _check_sizes(drv_shape[1], drv_shape[2], self.max_image_side, "driving")
    checks.append(tf.debugging.assert_positive(src_shape[0], message="source: empty batch (N = 0)"))
    checks.append(
      tf.debugging.assert_equal(
        src_shape[0], drv_shape[0], message="source and driving need the same batch size N"
      )
    )
    with tf.control_dependencies(checks):
      src = augment_lib.resize_image(source, self.image_size)
      drv = augment_lib.resize_image(driving, self.image_size)
    out = self.model.animate(src, drv)
    image = tf.round(tf.clip_by_value(out["image"], 0.0, 1.0) * 255.0)
    return {
      "image": tf.cast(image, tf.uint8),
      "part_labels": tf.cast(out["part_labels"], tf.uint8),
    }

  def _metadata(self, dummy):
    batch = tf.shape(dummy)[0]
    names = tf.constant(self.part_names, tf.string)
    return {
      "part_names": tf.tile(names[None, :], [batch, 1]),
      "num_parts": tf.fill([batch], tf.constant(self.num_parts, tf.int32)),
      "image_size": tf.fill([batch], tf.constant(self.image_size, tf.int32)),
      "max_image_side": tf.fill([batch], tf.constant(self.max_image_side, tf.int32)),
    }


# ------------------------------------------------------------------------------ warm-up


def warmup_requests(image_size, model_name=DEFAULT_MODEL_NAME):
  """Small PredictRequests (one per signature) for ``assets.extra/tf_serving_warmup_requests``.

  Args:
    image_size: model input side S (the serving_default request is one S x S grey image).
    model_name: the name in each request's model_spec.

  Returns:
    list of `tensorflow_serving.apis.predict_pb2.PredictRequest`.
  """
  from tensorflow_serving.apis import predict_pb2

  image = np.full([1, image_size, image_size, 3], 128, np.uint8)
  png = tf.io.encode_png(image[0]).numpy()
  inputs = {
    SERVING_DEFAULT: {"images": tf.make_tensor_proto(image)},
    SERVE_ENCODED: {"images": tf.make_tensor_proto(np.array([png], dtype=object))},
    METADATA: {"dummy": tf.make_tensor_proto(np.zeros([1], np.int32))},
  }
  requests = []
  for signature, tensors in inputs.items():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for key, proto in tensors.items():
      request.inputs[key].CopyFrom(proto)
    requests.append(request)
  return requests


def write_warmup_file(path, requests):
  """Writes PredictRequests as PredictionLog TFRecords (TF Serving's warm-up format)."""
  from tensorflow_serving.apis import prediction_log_pb2

  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
      )
      writer.write(log.SerializeToString())


def read_warmup_file(path):
  """PredictRequests of a warm-up file (empty list if it does not exist)."""
  if not os.path.exists(path):
    return []
  from tensorflow_serving.apis import prediction_log_pb2

  requests = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    if log.HasField("predict_log"):
      requests.append(log.predict_log.request)
  return requests


# ------------------------------------------------------------------------------ export


def _make_tree_readable(root):
  """mkdtemp makes 0700 dirs; a server running as another user must be able to read the export."""
  for folder, _, files in os.walk(root):
    os.chmod(folder, 0o755)
    for name in files:
      path = os.path.join(folder, name)
      os.chmod(path, os.stat(path).st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def export(
  model,
  export_base,
  version=None,
  include_masks=False,
  max_image_side=DEFAULT_MAX_IMAGE_SIDE,
  model_name=DEFAULT_MODEL_NAME,
  extra_info=None,
  include_animate=True,
):
  """Exports `model` as ``export_base/<version>/`` for TF Serving.

  Args:
    model: a built `CoPartModel` (restored weights).
    export_base: the model's base path (created if missing).
    version: integer version; default = largest existing version + 1 (or 1).
    include_masks: add the soft masks output ``part_masks`` (mind TF Serving's 4 MB messages).
    max_image_side: largest input side the signatures accept.
    model_name: model_spec name written into the warm-up requests.
    extra_info: optional JSON-able dict merged into ``assets.extra/copart_export.json``.
    include_animate: also export the ``animate`` signature (source + driving -> image).

  Returns:
    path of the new version directory.

  Raises:
    ModelError: the version exists already, or a bad version number.
  """
  export_base = os.fspath(export_base)
  os.makedirs(export_base, exist_ok=True)
  version = next_version(export_base) if version is None else int(version)
  if version < 0:
    raise ModelError(f"export version must be >= 0, got {version}")
  final = os.path.join(export_base, str(version))
  if os.path.exists(final):
    raise ModelError(f"{final} already exists; pick another --version or leave it unset")

  computation = ServingComputation(model, include_masks, max_image_side)
  functions = computation.functions(include_animate=include_animate)
  # Keras' export archive, one endpoint (= signature) per function. It saves the variables the
  # endpoints capture; `archive.track(model)` is left out on purpose: it adds a second copy of
  # every variable to the SavedModel (measured: 12.4 MB instead of 6.2 MB for the small preset).
  archive = keras.export.ExportArchive()
  for name, fn in functions.items():
    archive.add_endpoint(name, fn)

  tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=export_base)
  try:
    saved = os.path.join(tmp, "model")
    archive.write_out(saved, verbose=False)
    # A plain file in assets/ (no graph reads it): for people and tools listing the parts.
    os.makedirs(os.path.join(saved, "assets"), exist_ok=True)
    with open(os.path.join(saved, "assets", PART_NAMES_ASSET), "w") as f:
      f.write("\n".join(computation.part_names) + "\n")

    extra = os.path.join(saved, ASSETS_EXTRA)
    os.makedirs(extra, exist_ok=True)
    try:
      write_warmup_file(
        os.path.join(extra, WARMUP_FILE), warmup_requests(computation.image_size, model_name)
      )
    except ImportError:
      tf.get_logger().warning("tensorflow-serving-api is not installed: no %s written", WARMUP_FILE)
    info = {
      "version": version,
      "num_parts": computation.num_parts,
      "image_size": computation.image_size,
      "part_names": computation.part_names,
      "include_masks": computation.include_masks,
      "max_image_side": computation.max_image_side,
      "preset": getattr(getattr(model, "preset", None), "name", None),
      "signatures": list(functions),
    }
    info.update(extra_info or {})
    with open(os.path.join(extra, EXPORT_INFO_FILE), "w") as f:
      json.dump(info, f, indent=2)
    _make_tree_readable(saved)
    try:
      # Atomic on one file system; fails (instead of merging) if `final` appeared meanwhile.
      os.rename(saved, final)
    except OSError as error:
      raise ModelError(f"cannot create {final}: {error}") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def export_run(model_dir, export_base, checkpoint=None, **options):
  """Restores a training run (`copart_tf.model.loading`) and exports it (the CLI's work).

  Args:
    model_dir: a `copart_tf.train` ``--model_dir``.
    export_base: the model's base path.
    checkpoint: checkpoint path prefix (default: the run's latest).
    **options: `export` arguments (version, include_masks, max_image_side, model_name).

  Returns:
    path of the new version directory.

  Raises:
    ModelError: not a run directory, no or mismatching checkpoint, or an existing version.
  """
  from copart_tf.model import loading

  model = loading.load_from_model_dir(model_dir, checkpoint=checkpoint)
  if checkpoint is None:
    checkpoint = tf.train.latest_checkpoint(os.path.join(model_dir, loading.CHECKPOINT_SUBDIR))
  info = {"model_dir": os.path.abspath(model_dir), "checkpoint": checkpoint}
  return export(model, export_base, extra_info=info, **options)
