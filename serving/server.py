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
import os
import signal
import sys
import threading

import grpc
from absl import app, flags, logging

from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
from serving import service as service_lib
from serving import validation, versions

# This module builds, starts and stops the server and is the binary; the rest of the server is in
# versions.py (loading SavedModel versions, switching between them), validation.py (request
# checks and limits, one-line errors) and service.py (RPC handling, the gRPC servicers).


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
  max_receive_message_bytes=validation.DEFAULT_MESSAGE_BYTES,
  max_send_message_bytes=validation.DEFAULT_MESSAGE_BYTES,
  max_image_side=validation.DEFAULT_MAX_IMAGE_SIDE,
  max_workers=8,
  warmup=True,
  max_images_per_request=validation.DEFAULT_MAX_IMAGES_PER_REQUEST,
  max_decoded_pixels=validation.DEFAULT_MAX_DECODED_PIXELS,
  chunk_images=service_lib.DEFAULT_CHUNK_IMAGES,
  chunk_pixels=service_lib.DEFAULT_CHUNK_PIXELS,
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
  service = service_lib.PredictionService(
    None,
    max_image_side,
    max_send_message_bytes,
    max_receive_message_bytes,
    max_images_per_request=max_images_per_request,
    max_decoded_pixels=max_decoded_pixels,
    chunk_images=chunk_images,
    chunk_pixels=chunk_pixels,
  )
  manager = versions.ModelManager(
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

  prediction_servicer, model_servicer = service_lib.servicers(service)
  service_lib.add_servicer(server, prediction_service_pb2, "PredictionService", prediction_servicer)
  service_lib.add_servicer(server, model_service_pb2, "ModelService", model_servicer)
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
    "max_receive_message_bytes",
    validation.DEFAULT_MESSAGE_BYTES,
    "Largest request accepted (bytes).",
  )
  flags.DEFINE_integer(
    "max_send_message_bytes", validation.DEFAULT_MESSAGE_BYTES, "Largest response sent (bytes)."
  )
  flags.DEFINE_integer(
    "max_image_side", validation.DEFAULT_MAX_IMAGE_SIDE, "Largest image side accepted (pixels)."
  )
  flags.DEFINE_integer(
    "max_images_per_request",
    validation.DEFAULT_MAX_IMAGES_PER_REQUEST,
    "Largest batch of one request (INVALID_ARGUMENT above it).",
  )
  flags.DEFINE_integer(
    "max_decoded_pixels",
    validation.DEFAULT_MAX_DECODED_PIXELS,
    "Most pixels the images of one request may decode to, checked from shapes / image headers "
    "before decoding (RESOURCE_EXHAUSTED above it).",
  )
  flags.DEFINE_integer(
    "chunk_images",
    service_lib.DEFAULT_CHUNK_IMAGES,
    "The model runs on at most this many images at a time.",
  )
  flags.DEFINE_integer(
    "chunk_pixels",
    service_lib.DEFAULT_CHUNK_PIXELS,
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
