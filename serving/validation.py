"""Request validation of the local server: limits, checks and one-line errors.

`RequestChecks` holds the checks a Predict request goes through before the model runs (TF
Serving's own checks against the signature, plus the image-size and work bounds), each failing
with a `ServingError` that carries the gRPC status code and a one-line message (`first_line`).
`UnparsableRequest` stands for request bytes that do not parse as the method's request message.
"""

import io

import grpc
import numpy as np

DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's (and so TF Serving's) default receive limit
DEFAULT_MAX_IMAGE_SIDE = 4096
# Work bounds of one request, checked from its shapes / image headers before anything is decoded.
DEFAULT_MAX_IMAGES_PER_REQUEST = 128
DEFAULT_MAX_DECODED_PIXELS = 4 * DEFAULT_MAX_IMAGE_SIDE * DEFAULT_MAX_IMAGE_SIDE  # 67,108,864


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


def first_line(error, limit=300):
  """The first non-blank line of an error's message, at most `limit` characters."""
  text = getattr(error, "message", None) or str(error)
  lines = [line for line in text.strip().splitlines() if line.strip()]
  return (lines[0] if lines else type(error).__name__)[:limit]


class RequestChecks:
  """The checks of a Predict request's inputs and response size, each raising `ServingError`.

  A mixin of `serving.service.PredictionService`, which sets the limits read here:
  `max_image_side`, `max_send_message_bytes`, `max_receive_message_bytes`,
  `max_images_per_request` and `max_decoded_pixels` (see its Args).
  """

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
          f"input '{key}': malformed TensorProto ({first_line(error)})",
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
        detail = "" if isinstance(error, UnidentifiedImageError) else f" ({first_line(error, 120)})"
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

  def _check_response_size(self, size, projected=False):
    if size > self.max_send_message_bytes:
      what = "would be" if projected else "is"
      raise ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"response {what} {size} bytes, above the server's limit of "
        f"{self.max_send_message_bytes} bytes (--max_send_message_bytes): send fewer or smaller "
        "images, or use output_filter",
      )


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
    self.reason = first_line(error, limit=200)

  def message(self):
    """The status details sent to the client."""
    return f"Could not parse the request ({self.size} bytes) as {self.type_name}: {self.reason}"

  def log_line(self):
    """The single server log line."""
    return f"{self.method}: INVALID_ARGUMENT, {self.message()}"
