"""A gRPC server speaking TF Serving's own API, for machines without tensorflow_model_server.

  python -m serving.server --model_base_path=exports/copart --model_name=copart --port=8500

It implements `tensorflow.serving.PredictionService` (Predict, GetModelMetadata; Classify, Regress
and MultiInference answer UNIMPLEMENTED) and `tensorflow.serving.ModelService` (GetModelStatus)
with tensorflow-serving-api's generated stubs, so clients written for tensorflow_model_server
(`serving/client.py`) work against it unchanged. Like tensorflow_model_server it serves the newest
numbered version under `--model_base_path`, polls for new versions every
`--file_system_poll_wait_seconds` and switches to a new one (loaded and warmed up first) without a
restart, and returns the same status codes: NOT_FOUND for an unknown model or version,
FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for a bad input (also for request
bytes that do not parse: one log line, no traceback).

Work is bounded before it is done: a request's batch is at most `--max_images_per_request`
(INVALID_ARGUMENT) and its images decode to at most `--max_decoded_pixels` pixels, read from the
dense input's shape or the encoded images' headers before anything is decoded
(RESOURCE_EXHAUSTED). An admitted batch runs through the model in chunks of at most
`--chunk_images` images and `--chunk_pixels` pixels, so peak memory depends on the chunk, not the
batch; a response that would exceed `--max_send_message_bytes` is refused after the first chunk.
"""

import concurrent.futures
import io
import os
import signal
import sys
import threading
import time

import grpc
import numpy as np
from absl import app, flags, logging

DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's (and so TF Serving's) default receive limit
DEFAULT_MAX_IMAGE_SIDE = 4096
# Work bounds of one request, checked from its shapes / image headers before anything is decoded.
DEFAULT_MAX_IMAGES_PER_REQUEST = 128
DEFAULT_MAX_DECODED_PIXELS = 4 * DEFAULT_MAX_IMAGE_SIDE * DEFAULT_MAX_IMAGE_SIDE  # 67,108,864
# A request's images run through the model in chunks of at most this many images / pixels.
DEFAULT_CHUNK_IMAGES = 16
DEFAULT_CHUNK_PIXELS = DEFAULT_MAX_IMAGE_SIDE * DEFAULT_MAX_IMAGE_SIDE  # one largest image
DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"
# Version states of `GetModelStatus` (tensorflow_serving/apis/get_model_status.proto).
_STATE_LOADING = 20
_STATE_AVAILABLE = 30
_STATE_END = 50

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request failure with its gRPC status code."""

  def __init__(self, code, message):
    super().__init__(message)
    self.code = code
    self.message = message


def _dtype_name(enum_value):
  import tensorflow as tf

  try:
    return tf.dtypes.as_dtype(enum_value).name
  except TypeError:
    return f"dtype enum {enum_value}"


def _first_line(error, limit=300):
  text = getattr(error, "message", None) or str(error)
  lines = [line for line in text.strip().splitlines() if line.strip()]
  return (lines[0] if lines else type(error).__name__)[:limit]


class Servable:
  """One loaded SavedModel version: its signature defs and callable signatures.

  Args:
    name: model name.
    version: integer version.
    path: the version directory.
  """

  def __init__(self, name, version, path):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    self.name = name
    self.version = int(version)
    self.path = path
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
      proto = saved_model_pb2.SavedModel.FromString(f.read())
    serve = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
    if not serve:
      raise ValueError(f"{path}: no MetaGraph with the 'serve' tag")
    self.signature_defs = dict(serve[0].signature_def)
    self._loaded = tf.saved_model.load(path, tags=["serve"])
    self.functions = {
      key: self._loaded.signatures[key]
      for key in self.signature_defs
      if key != INIT_OP_SIGNATURE and key in self._loaded.signatures
    }


class ModelManager:
  """Serves the newest version under a base path and switches to new versions as they appear.

  Args:
    name: the model name requests must use.
    base_path: directory of numbered SavedModel versions.
    poll_seconds: seconds between polls of `base_path` (<= 0: load once, never poll).
    warmup: replay ``assets.extra/tf_serving_warmup_requests`` before a version goes live.
    predict_fn: callable (servable, request) -> response used for the warm-up.
  """

  def __init__(self, name, base_path, poll_seconds=2.0, warmup=True, predict_fn=None):
    self.name = name
    self.base_path = os.fspath(base_path)
    self.poll_seconds = float(poll_seconds)
    self.warmup = warmup
    self._predict_fn = predict_fn
    self._servable = None
    self._states = {}  # version -> (state, error message or "")
    self._failed = {}  # version -> mtime of the directory that failed to load
    self._lock = threading.Lock()
    self._poll_lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None
    self._warned_empty = False

  @property
  def servable(self):
    """The live `Servable` (or None)."""
    return self._servable

  def states(self):
    with self._lock:
      return dict(self._states)

  def _set_state(self, version, state, error=""):
    with self._lock:
      self._states[version] = (state, error)

  def poll(self):
    """Loads the newest version if it is not the live one. Returns the live version or None."""
    from copart_tf.export import saved_model as saved_model_lib

    with self._poll_lock:
      versions = saved_model_lib.list_versions(self.base_path)
      current = self._servable
      if not versions:
        if not self._warned_empty:
          logging.warning("no versions of model %r under %s yet", self.name, self.base_path)
          self._warned_empty = True
        if current is not None and not os.path.isdir(current.path):
          logging.info("version %d of %r was removed: unloaded", current.version, self.name)
          self._servable = None
          self._set_state(current.version, _STATE_END)
        return None if self._servable is None else self._servable.version
      self._warned_empty = False
      for version in reversed(versions):
        if current is not None and version == current.version:
          return version
        path = os.path.join(self.base_path, str(version))
        try:
          mtime = os.stat(path).st_mtime
        except OSError:
          continue
        if self._failed.get(version) == mtime:
          continue  # same broken directory as last time: try an older version
        if self._load(version, path, mtime):
          return version
      return None if current is None else current.version

  def _load(self, version, path, mtime):
    self._set_state(version, _STATE_LOADING)
    started = time.time()
    try:
      servable = Servable(self.name, version, path)
      if self.warmup and self._predict_fn is not None:
        self._run_warmup(servable)
    except Exception as error:  # any load failure keeps the old version live
      message = _first_line(error)
      logging.error("cannot load version %d of %r from %s: %s", version, self.name, path, message)
      self._failed[version] = mtime
      self._set_state(version, _STATE_END, message)
      return False
    old = self._servable
    self._servable = servable  # atomic swap: in-flight requests keep their reference
    self._set_state(version, _STATE_AVAILABLE)
    if old is not None:
      self._set_state(old.version, _STATE_END)
    logging.info(
      "serving version %d of %r from %s (loaded in %.1f s)",
      version,
      self.name,
      path,
      time.time() - started,
    )
    return True

  def _run_warmup(self, servable):
    from copart_tf.export import saved_model as saved_model_lib

    path = os.path.join(servable.path, saved_model_lib.ASSETS_EXTRA, saved_model_lib.WARMUP_FILE)
    requests = saved_model_lib.read_warmup_file(path)
    for request in requests:
      self._predict_fn(servable, request)
    if requests:
      logging.info("version %d: replayed %d warm-up requests", servable.version, len(requests))

  def start(self):
    """Loads what is there now, then polls in a daemon thread."""
    self.poll()
    if self.poll_seconds > 0:
      self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
      self._thread.start()

  def _poll_loop(self):
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception as error:  # the poller must survive anything
        logging.error("version poll failed: %s", _first_line(error))

  def stop(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=30)


def _model_spec_text(spec):
  if spec.HasField("version"):
    return f"Specific({spec.name}, {spec.version.value})"
  if spec.version_label:
    return f"Labelled({spec.name}, {spec.version_label})"
  return f"Latest({spec.name})"


class PredictionService:
  """Request handling shared by the gRPC servicers (no gRPC types except status codes).

  Args:
    manager: the `ModelManager`.
    max_image_side: largest accepted image side (INVALID_ARGUMENT above it).
    max_send_message_bytes: responses larger than this fail with RESOURCE_EXHAUSTED.
    max_receive_message_bytes: bounds the size a request may declare for a tensor.
    max_images_per_request: largest batch (dimension 0) of a request (INVALID_ARGUMENT above it).
    max_decoded_pixels: most pixels the images of one request may decode to, summed over the
      batch, from the dense input's shape or the encoded images' headers (RESOURCE_EXHAUSTED
      above it).
    chunk_images: the model runs on at most this many images of a request at a time.
    chunk_pixels: ... and on at most this many decoded pixels at a time (an image larger than
      this runs alone).
  """

  def __init__(
    self,
    manager,
    max_image_side=DEFAULT_MAX_IMAGE_SIDE,
    max_send_message_bytes=DEFAULT_MESSAGE_BYTES,
    max_receive_message_bytes=DEFAULT_MESSAGE_BYTES,
    max_images_per_request=DEFAULT_MAX_IMAGES_PER_REQUEST,
    max_decoded_pixels=DEFAULT_MAX_DECODED_PIXELS,
    chunk_images=DEFAULT_CHUNK_IMAGES,
    chunk_pixels=DEFAULT_CHUNK_PIXELS,
  ):
    self.manager = manager
    self.max_image_side = int(max_image_side)
    self.max_send_message_bytes = int(max_send_message_bytes)
    self.max_receive_message_bytes = int(max_receive_message_bytes)
    self.max_images_per_request = int(max_images_per_request)
    self.max_decoded_pixels = int(max_decoded_pixels)
    self.chunk_images = int(chunk_images)
    self.chunk_pixels = int(chunk_pixels)

  # ---------------------------------------------------------------- lookup

  def servable_for(self, spec):
    """The servable a ModelSpec asks for, or ServingError NOT_FOUND / INVALID_ARGUMENT."""
    if not spec.name:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name")
    servable = self.manager.servable
    if spec.name != self.manager.name or servable is None:
      raise ServingError(
        grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {_model_spec_text(spec)}"
      )
    if spec.version_label:
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Unrecognized servable version label: {spec.version_label}",
      )
    if spec.HasField("version") and spec.version.value != servable.version:
      raise ServingError(
        grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {_model_spec_text(spec)}"
      )
    return servable

  # ---------------------------------------------------------------- Predict

  def predict(self, request):
    servable = self.servable_for(request.model_spec)
    return self.run_predict(servable, request)

  def run_predict(self, servable, request):
    """Validates `request` against the signature, runs it, builds the PredictResponse."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(signature_name)
    fn = servable.functions.get(signature_name)
    if signature is None or fn is None:
      raise ServingError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f'Serving signature key "{signature_name}" not found.',
      )
    inputs, pixels = self._check_inputs(signature, request)
    outputs = list(request.output_filter)
    for alias in outputs:
      if alias not in signature.outputs:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
          f"set {{{','.join(sorted(signature.outputs))}}}.",
        )
    if len(set(outputs)) != len(outputs):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    batch = len(pixels)
    parts = {}
    for start, stop in self._chunks(pixels):
      chunk = {key: value[start:stop] for key, value in inputs.items()}
      try:
        result = fn(**{key: tf.constant(value) for key, value in chunk.items()})
      except tf.errors.OpError as error:
        code = _CODES.get(error.error_code, grpc.StatusCode.INTERNAL)
        raise ServingError(code, _first_line(error)) from None
      for alias in outputs or sorted(result):
        parts.setdefault(alias, []).append(result[alias].numpy())
      del result
      if start == 0 and stop < batch:
        # Every image gives the same amount of output (or, for dense inputs of one size, the
        # same): a response that cannot be sent is refused after the first chunk.
        first = predict_pb2.PredictResponse()
        for alias, values in parts.items():
          first.outputs[alias].CopyFrom(tf.make_tensor_proto(values[0]))
        self._check_response_size(first.ByteSize() * batch // stop, projected=True)
    for alias, values in parts.items():
      value = values[0] if len(values) == 1 else np.concatenate(values, axis=0)
      response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
    self._check_response_size(response.ByteSize())
    return response

  def _check_response_size(self, size, projected=False):
    if size > self.max_send_message_bytes:
      what = "would be" if projected else "is"
      raise ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"response {what} {size} bytes, above the server's limit of "
        f"{self.max_send_message_bytes} bytes (--max_send_message_bytes): send fewer or smaller "
        "images, or use output_filter",
      )

  def _chunks(self, pixels):
    """(start, stop) ranges of the batch: <= chunk_images images and <= chunk_pixels pixels."""
    chunks, start, total = [], 0, 0
    for i, count in enumerate(pixels):
      if i > start and (i - start >= self.chunk_images or total + count > self.chunk_pixels):
        chunks.append((start, i))
        start, total = i, 0
      total += int(count)
    chunks.append((start, len(pixels)))
    return chunks

  def _check_inputs(self, signature, request):
    """TensorProtos -> NumPy arrays, with TF Serving's checks plus image-size and work checks.

    Returns:
      (arrays, pixels): the inputs by key, and int64 `[N]` decoded pixels of each batch element
      (from the dense images' shapes or the encoded images' headers, summed over the inputs).
    """
    import tensorflow as tf

    sent, expected = set(request.inputs), set(signature.inputs)
    if sent != expected:
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
        f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
        f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
      )
    arrays = {}
    pixels = None
    for key in sorted(expected):
      info = signature.inputs[key]
      proto = request.inputs[key]
      if proto.dtype != info.dtype:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}' must be {_dtype_name(info.dtype)}, got {_dtype_name(proto.dtype)}",
        )
      shape = [d.size for d in proto.tensor_shape.dim]
      if proto.tensor_shape.unknown_rank:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' has unknown rank")
      if not info.tensor_shape.unknown_rank:
        want = [d.size for d in info.tensor_shape.dim]
        if len(shape) != len(want) or any(
          w >= 0 and w != s for w, s in zip(want, shape, strict=True)
        ):
          pretty = ", ".join("?" if w < 0 else str(w) for w in want)
          raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{key}' must have shape [{pretty}], got {shape}",
          )
      if any(s < 0 for s in shape):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}': bad shape {shape}")
      if not shape or 0 in shape:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}' is empty (zero-size shape {shape})"
        )
      if shape[0] > self.max_images_per_request:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}' has a batch of {shape[0]}, above the server's limit of "
          f"{self.max_images_per_request} images per request (--max_images_per_request): "
          "split it into several requests",
        )
      if len(shape) == 4 and (shape[1] > self.max_image_side or shape[2] > self.max_image_side):
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}': image of {shape[1]}x{shape[2]} pixels is too large (the server "
          f"accepts sides up to {self.max_image_side}, --max_image_side)",
        )
      itemsize = 1 if info.dtype == tf.string.as_datatype_enum else tf.as_dtype(info.dtype).size
      declared = int(np.prod(shape, dtype=np.int64)) * itemsize
      if declared > 16 * self.max_receive_message_bytes:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}' declares shape {shape} ({declared} bytes), far more than a request "
          "can carry",
        )
      if len(shape) == 4:
        dense = np.full(shape[0], shape[1] * shape[2], np.int64)
        self._check_pixels(key, int(dense.sum()), "from its shape")
        pixels = dense if pixels is None or len(pixels) != len(dense) else pixels + dense
      try:
        array = tf.make_ndarray(proto)
      except (ValueError, TypeError) as error:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}': malformed TensorProto ({_first_line(error)})",
        ) from None
      if info.dtype == tf.string.as_datatype_enum and key == "images":
        encoded = self._check_encoded(key, array)
        pixels = encoded if pixels is None or len(pixels) != len(encoded) else pixels + encoded
      arrays[key] = array
    sizes = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(sizes) > 1:
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT, f"inputs have different batch sizes {sorted(sizes)}"
      )
    if pixels is None:  # no image input (metadata): one chunk per `chunk_images` rows
      pixels = np.zeros(sizes.pop() if sizes else 1, np.int64)
    elif len(arrays) > 1:
      self._check_pixels("+".join(sorted(arrays)), int(pixels.sum()), "from their shapes")
    return arrays, pixels

  def _check_pixels(self, key, total, how):
    if total > self.max_decoded_pixels:
      raise ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"input '{key}' decodes to {total} pixels ({how}), above the server's budget of "
        f"{self.max_decoded_pixels} pixels per request (--max_decoded_pixels): send fewer or "
        "smaller images",
      )

  def _check_encoded(self, key, array):
    """Header-only check of encoded images: format, side limits and the pixel budget.

    Returns:
      int64 `[N]`: the pixels each image decodes to (height x width from its header).
    """
    from PIL import Image, UnidentifiedImageError

    flat = array.reshape(-1)
    pixels = np.zeros(len(flat), np.int64)
    total = 0
    for i, data in enumerate(flat):
      try:
        with Image.open(io.BytesIO(data)) as image:
          width, height = image.size
      except Exception as error:  # PIL raises many types for garbage
        detail = (
          "" if isinstance(error, UnidentifiedImageError) else f" ({_first_line(error, 120)})"
        )
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}'[{i}] ({len(data)} bytes) is not a PNG/JPEG/GIF/BMP image{detail}",
        ) from None
      if max(width, height) > self.max_image_side or min(width, height) < 1:
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"input '{key}'[{i}]: image of {height}x{width} pixels is too large (the server "
          f"accepts sides up to {self.max_image_side}, --max_image_side)",
        )
      pixels[i] = width * height
      total += width * height
      if total > self.max_decoded_pixels:  # stop reading headers as soon as it is over
        self._check_pixels(key, total, f"from the headers of its first {i + 1} images")
    return pixels

  # ---------------------------------------------------------------- metadata and status

  def get_model_metadata(self, request):
    from tensorflow_serving.apis import get_model_metadata_pb2

    if not request.HasField("model_spec"):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
      )
    for field in request.metadata_field:
      if field != "signature_def":
        raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
        )
    servable = self.servable_for(request.model_spec)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
      signature_map.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signature_map)
    return response

  def get_model_status(self, request):
    from tensorflow_serving.apis import get_model_status_pb2

    spec = request.model_spec
    states = self.manager.states()
    if spec.name != self.manager.name or not states:
      raise ServingError(
        grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
      )
    if spec.version_label:
      raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Unrecognized servable version label: {spec.version_label}",
      )
    if spec.HasField("version"):
      if spec.version.value not in states:
        raise ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"Could not find version {spec.version.value} of model {spec.name}",
        )
      states = {spec.version.value: states[spec.version.value]}
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in sorted(states, reverse=True):
      state, error = states[version]
      entry = response.model_version_status.add()
      entry.version = version
      entry.state = state
      if error:
        entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
        entry.status.error_message = error
    return response


class UnparsableRequest:
  """Stands for a request whose bytes are not a valid message of the method's request type.

  gRPC's generated registration parses requests before any handler runs; a parse failure there
  is logged with a traceback and answered INTERNAL. `add_servicer` parses into this instead, and
  the handler answers INVALID_ARGUMENT with one log line, as TF Serving does for a request it
  cannot parse.

  Args:
    method: full method path, e.g. ``/tensorflow.serving.PredictionService/Predict``.
    type_name: full name of the expected request message.
    size: number of bytes received.
    error: the parse exception.
  """

  def __init__(self, method, type_name, size, error):
    self.method = method
    self.type_name = type_name
    self.size = size
    self.reason = _first_line(error, limit=200)

  def message(self):
    """The status details sent to the client."""
    return f"Could not parse the request ({self.size} bytes) as {self.type_name}: {self.reason}"

  def log_line(self):
    """The single server log line."""
    return f"{self.method}: INVALID_ARGUMENT, {self.message()}"


def _lenient_parser(method, message_class):
  """`message_class.FromString` that returns an `UnparsableRequest` instead of raising."""

  def parse(data):
    try:
      return message_class.FromString(data)
    except Exception as error:  # DecodeError, and whatever else a corrupt message raises
      return UnparsableRequest(method, message_class.DESCRIPTOR.full_name, len(data), error)

  return parse


def add_servicer(server, pb2_module, service_name, servicer):
  """Registers a servicer's unary methods like the generated ``add_*_to_server`` does, except
  that undecodable request bytes reach the handler as an `UnparsableRequest`.

  Args:
    server: a `grpc.Server`.
    pb2_module: the service's generated ``*_pb2`` module (e.g. ``prediction_service_pb2``).
    service_name: the service's name in that module (e.g. ``"PredictionService"``).
    servicer: an object with one method per RPC of the service (CamelCase names).
  """
  from google.protobuf import message_factory

  descriptor = pb2_module.DESCRIPTOR.services_by_name[service_name]
  handlers = {}
  for method in descriptor.methods:
    path = f"/{descriptor.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    handlers[method.name] = grpc.unary_unary_rpc_method_handler(
      getattr(servicer, method.name),
      request_deserializer=_lenient_parser(path, request_class),
      response_serializer=response_class.SerializeToString,
    )
  server.add_generic_rpc_handlers(
    (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
  )


def _servicers(service):
  """The two gRPC servicers around a `PredictionService`."""
  from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

  def handle(fn, request, context):
    if isinstance(request, UnparsableRequest):
      logging.warning("%s", request.log_line())
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
    try:
      return fn(request)
    except ServingError as error:
      context.abort(error.code, error.message)
    except Exception as error:  # never take the server down
      logging.exception("internal error")
      context.abort(grpc.StatusCode.INTERNAL, f"internal error: {_first_line(error)}")

  def unimplemented(method):
    def fn(self, request, context):
      del self
      if isinstance(request, UnparsableRequest):
        logging.warning("%s", request.log_line())
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
      context.abort(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{method} is not implemented by this server (copart models only have Predict signatures)",
      )

    return fn

  class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # gRPC method names are CamelCase
      return handle(service.predict, request, context)

    def GetModelMetadata(self, request, context):
      return handle(service.get_model_metadata, request, context)

    Classify = unimplemented("Classify")
    Regress = unimplemented("Regress")
    MultiInference = unimplemented("MultiInference")

  class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def GetModelStatus(self, request, context):
      return handle(service.get_model_status, request, context)

    HandleReloadConfigRequest = unimplemented("HandleReloadConfigRequest")

  return PredictionServicer(), ModelServicer()


def _address(host, port):
  return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class ModelServer:
  """A running server; `create_server` builds and starts one.

  Attributes:
    port: the bound port (useful with port 0).
    address: ``host:port``.
    manager: the `ModelManager`.
  """

  def __init__(self, server, manager, host, port):
    self._server = server
    self.manager = manager
    self.host = host
    self.port = port
    self.address = _address(host, port)

  def stop(self, grace=5.0):
    """Stops polling, lets in-flight requests finish for `grace` seconds, and shuts down."""
    self.manager.stop()
    self._server.stop(grace).wait()

  def wait(self, timeout=None):
    return self._server.wait_for_termination(timeout)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.stop(grace=1.0)


def create_server(
  model_base_path,
  model_name="copart",
  host="127.0.0.1",
  port=8500,
  poll_seconds=2.0,
  max_receive_message_bytes=DEFAULT_MESSAGE_BYTES,
  max_send_message_bytes=DEFAULT_MESSAGE_BYTES,
  max_image_side=DEFAULT_MAX_IMAGE_SIDE,
  max_workers=8,
  warmup=True,
  max_images_per_request=DEFAULT_MAX_IMAGES_PER_REQUEST,
  max_decoded_pixels=DEFAULT_MAX_DECODED_PIXELS,
  chunk_images=DEFAULT_CHUNK_IMAGES,
  chunk_pixels=DEFAULT_CHUNK_PIXELS,
):
  """Loads the newest version under `model_base_path` and starts serving it.

  Args:
    model_base_path: directory of numbered SavedModel versions (``export_base``).
    model_name: name clients put in ModelSpec.name.
    host: interface to bind (loopback by default).
    port: TCP port (0 = any free port; see `ModelServer.port`).
    poll_seconds: version poll interval (<= 0: never poll).
    max_receive_message_bytes: gRPC receive limit.
    max_send_message_bytes: gRPC send limit (larger responses get RESOURCE_EXHAUSTED).
    max_image_side: largest accepted image side.
    max_workers: request threads.
    warmup: replay each version's warm-up requests before serving it.
    max_images_per_request: largest request batch (INVALID_ARGUMENT above it).
    max_decoded_pixels: pixel budget of one request, checked before decoding
      (RESOURCE_EXHAUSTED above it).
    chunk_images: most images the model runs on at a time.
    chunk_pixels: most decoded pixels the model runs on at a time.

  Returns:
    a started `ModelServer`.

  Raises:
    OSError: the address cannot be bound.
  """
  service = PredictionService(
    None,
    max_image_side,
    max_send_message_bytes,
    max_receive_message_bytes,
    max_images_per_request=max_images_per_request,
    max_decoded_pixels=max_decoded_pixels,
    chunk_images=chunk_images,
    chunk_pixels=chunk_pixels,
  )
  manager = ModelManager(
    model_name, model_base_path, poll_seconds, warmup=warmup, predict_fn=service.run_predict
  )
  service.manager = manager
  options = [
    ("grpc.max_receive_message_length", int(max_receive_message_bytes)),
    ("grpc.max_send_message_length", int(max_send_message_bytes)),
    ("grpc.so_reuseport", 0),
  ]
  server = grpc.server(
    concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="predict"),
    options=options,
  )
  from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

  prediction_servicer, model_servicer = _servicers(service)
  add_servicer(server, prediction_service_pb2, "PredictionService", prediction_servicer)
  add_servicer(server, model_service_pb2, "ModelService", model_servicer)
  try:
    bound = server.add_insecure_port(_address(host, port))
  except RuntimeError as error:
    raise OSError(f"cannot bind {_address(host, port)}: {error}") from None
  if not bound:
    raise OSError(f"cannot bind {_address(host, port)}")
  manager.start()
  server.start()
  return ModelServer(server, manager, host, bound)


# ---------------------------------------------------------------------------------- binary


def define_flags():
  """The binary's flags (defined on demand so the module can be imported next to the client)."""
  flags.DEFINE_string(
    "model_base_path", None, "Directory of numbered SavedModel versions (export base)."
  )
  flags.DEFINE_string("model_name", "copart", "Model name clients must use.")
  flags.DEFINE_string("host", "127.0.0.1", "Interface to bind (0.0.0.0 = all; think first).")
  flags.DEFINE_integer("port", 8500, "gRPC port (0 = any free port, printed at start).")
  flags.DEFINE_float(
    "file_system_poll_wait_seconds", 2.0, "Seconds between polls for new versions (0 = never)."
  )
  flags.DEFINE_integer(
    "max_receive_message_bytes", DEFAULT_MESSAGE_BYTES, "Largest request accepted (bytes)."
  )
  flags.DEFINE_integer(
    "max_send_message_bytes", DEFAULT_MESSAGE_BYTES, "Largest response sent (bytes)."
  )
  flags.DEFINE_integer(
    "max_image_side", DEFAULT_MAX_IMAGE_SIDE, "Largest image side accepted (pixels)."
  )
  flags.DEFINE_integer(
    "max_images_per_request",
    DEFAULT_MAX_IMAGES_PER_REQUEST,
    "Largest batch of one request (INVALID_ARGUMENT above it).",
  )
  flags.DEFINE_integer(
    "max_decoded_pixels",
    DEFAULT_MAX_DECODED_PIXELS,
    "Most pixels the images of one request may decode to, checked from shapes / image headers "
    "before decoding (RESOURCE_EXHAUSTED above it).",
  )
  flags.DEFINE_integer(
    "chunk_images", DEFAULT_CHUNK_IMAGES, "The model runs on at most this many images at a time."
  )
  flags.DEFINE_integer(
    "chunk_pixels",
    DEFAULT_CHUNK_PIXELS,
    "... and on at most this many decoded pixels at a time (a larger image runs alone).",
  )
  flags.DEFINE_integer("max_workers", 8, "Request handler threads.")
  flags.DEFINE_bool("warmup", True, "Replay assets.extra warm-up requests on load.")
  flags.DEFINE_float("shutdown_grace_seconds", 5.0, "In-flight time allowed at shutdown.")


def main(argv):
  f = flags.FLAGS
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)", file=sys.stderr)
    return 2
  if not f.model_base_path:
    print("error: --model_base_path is required", file=sys.stderr)
    return 2
  if not os.path.isdir(f.model_base_path):
    print(f"error: --model_base_path {f.model_base_path} is not a directory", file=sys.stderr)
    return 2
  for name in (
    "max_receive_message_bytes",
    "max_send_message_bytes",
    "max_image_side",
    "max_images_per_request",
    "max_decoded_pixels",
    "chunk_images",
    "chunk_pixels",
  ):
    if f[name].value < 1:
      print(f"error: --{name} must be >= 1, got {f[name].value}", file=sys.stderr)
      return 2
  if f.max_workers < 1:
    print(f"error: --max_workers must be >= 1, got {f.max_workers}", file=sys.stderr)
    return 2
  stop = threading.Event()

  def on_signal(signum, frame):
    del frame
    logging.info("signal %d: shutting down", signum)
    stop.set()

  signal.signal(signal.SIGINT, on_signal)
  signal.signal(signal.SIGTERM, on_signal)
  try:
    server = create_server(
      f.model_base_path,
      model_name=f.model_name,
      host=f.host,
      port=f.port,
      poll_seconds=f.file_system_poll_wait_seconds,
      max_receive_message_bytes=f.max_receive_message_bytes,
      max_send_message_bytes=f.max_send_message_bytes,
      max_image_side=f.max_image_side,
      max_workers=f.max_workers,
      warmup=f.warmup,
      max_images_per_request=f.max_images_per_request,
      max_decoded_pixels=f.max_decoded_pixels,
      chunk_images=f.chunk_images,
      chunk_pixels=f.chunk_pixels,
    )
  except OSError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  live = server.manager.servable
  print(
    f"serving model {f.model_name!r} (version {live.version if live else 'none yet'}) "
    f"from {f.model_base_path} on {server.address}",
    flush=True,
  )
  while not stop.wait(0.5):
    pass
  server.stop(f.shutdown_grace_seconds)
  print("server stopped", flush=True)
  return 0


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
