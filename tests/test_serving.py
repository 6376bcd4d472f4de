"""gRPC serving with TF Serving's own API: round trips, bad requests, version switches, CLIs.

The client-side contract (`ClientContractMixin`) runs against the local server
(`python -m serving.server`, started in-process on 127.0.0.1 with an ephemeral port) and, when
`tensorflow_model_server` is on PATH, against the real server too (skipped otherwise).
One tiny model (K=3, 64x64, perturbed weights, fixed seed) is exported once for the module.
"""

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

import grpc
import keras
import numpy as np
import tensorflow as tf
from parameterized import parameterized
from PIL import Image
from tensorflow_serving.apis import (
  classification_pb2,
  get_model_metadata_pb2,
  get_model_status_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

from copart_tf.export import saved_model as export_lib
from copart_tf.inference import Segmenter
from copart_tf.model.copart_model import CoPartModel
from serving import client as client_lib
from serving import server as server_lib
from serving import service as service_lib
from serving import validation

MODEL = "copart"
RPC_TIMEOUT = 60.0  # seconds; generous because the test machine is shared
START_TIMEOUT = 240.0
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END

_MODULE = {}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Child Pythons find copart_tf / serving from the source tree even without an editable install.
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))


def make_model(seed=0):
  """Tiny CoPartModel with every weight perturbed (fixed seed), so poses are not trivial.

  (The same recipe as tests/test_export.py; test modules do not import each other.)
  """
  keras.utils.set_random_seed(seed)
  model = CoPartModel(num_parts=3, preset="tiny", image_size=64)
  model.build()
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    variable.assign(variable.numpy() + rng.normal(0.0, 0.05, variable.shape).astype(np.float32))
  return model


def make_images(seed=1):
  """Smooth random images (blobs, so labels are not pure noise): uint8 [3, 64, 64, 3]."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.float32)
  big = tf.image.resize(small, [64, 64], method="bilinear").numpy()
  return np.clip(big, 0, 255).astype(np.uint8)


def setUpModule():  # noqa: N802 - unittest's name
  tmp = tempfile.mkdtemp(prefix="copart_serving_test_")
  model = make_model(seed=0)
  base = os.path.join(tmp, "exports", MODEL)
  export_lib.export(model, base)
  _MODULE.update(tmp=tmp, model=model, base=base, reference=Segmenter.from_model(model))


def tearDownModule():  # noqa: N802
  shutil.rmtree(_MODULE["tmp"], ignore_errors=True)


def _predict_request(inputs, signature="", name=MODEL, version=None, output_filter=()):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  if signature:
    request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  request.output_filter.extend(output_filter)
  return request


def _png(image):
  return tf.io.encode_png(image).numpy()


def _images():
  return make_images()[:2]


# Bad requests: (name, request builder, expected status). The status codes are TF Serving's:
# it answers FAILED_PRECONDITION for an unknown signature key (predict_util.cc) and NOT_FOUND for
# an unknown model or version.
BAD_REQUESTS = [
  (
    "wrong_dtype",
    lambda: _predict_request({"images": _images().astype(np.float32)}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "wrong_rank",
    lambda: _predict_request({"images": _images()[0]}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "zero_batch",
    lambda: _predict_request({"images": np.zeros([0, 64, 64, 3], np.uint8)}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "zero_height",
    lambda: _predict_request({"images": np.zeros([1, 0, 64, 3], np.uint8)}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "too_large",
    lambda: _predict_request({"images": np.zeros([1, 4097, 2, 3], np.uint8)}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "missing_input",
    lambda: _predict_request({"pictures": _images()}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "extra_input",
    lambda: _predict_request({"images": _images(), "extra": np.zeros([2], np.int32)}),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "undecodable_image",
    lambda: _predict_request(
      {"images": np.array([b"not an image"], dtype=object)}, signature="serve_encoded"
    ),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "unknown_output",
    lambda: _predict_request({"images": _images()}, output_filter=["nope"]),
    grpc.StatusCode.INVALID_ARGUMENT,
  ),
  (
    "unknown_signature",
    lambda: _predict_request({"images": _images()}, signature="nope"),
    grpc.StatusCode.FAILED_PRECONDITION,
  ),
  (
    "unknown_model",
    lambda: _predict_request({"images": _images()}, name="nope"),
    grpc.StatusCode.NOT_FOUND,
  ),
  (
    "unknown_version",
    lambda: _predict_request({"images": _images()}, version=99),
    grpc.StatusCode.NOT_FOUND,
  ),
]


class ClientContractMixin:
  """What any TF Serving endpoint serving our export must do. Subclasses set `cls.address`."""

  exact = True  # same TensorFlow build as the in-memory reference: bitwise-equal labels

  @classmethod
  def open_channel(cls):
    cls.channel = client_lib.make_channel(cls.address)
    cls.stub = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)
    cls.model_stub = model_service_pb2_grpc.ModelServiceStub(cls.channel)

  def _check_against_reference(self, images, outputs, labels_at_model_size=False):
    expected = _MODULE["reference"].segment(images)
    labels = tf.make_ndarray(outputs["part_labels"])
    self.assertEqual(labels.dtype, np.uint8)
    if labels_at_model_size:
      self.assertEqual(labels.shape, (len(images), 64, 64))
    else:
      self.assertEqual(labels.shape, images.shape[:3])
      if self.exact:
        self.assertAllEqual(labels, expected["part_labels"])
      else:
        self.assertGreater(np.mean(labels == expected["part_labels"]), 0.99)
    self.assertAllClose(
      tf.make_ndarray(outputs["part_centers"]), expected["part_centers"], atol=1e-3
    )
    self.assertAllClose(
      tf.make_ndarray(outputs["part_affines"]), expected["part_affines"], atol=1e-3
    )

  def test_predict_round_trip(self):
    images = _images()
    response = self.stub.Predict(_predict_request({"images": images}), timeout=RPC_TIMEOUT)
    self.assertEqual(response.model_spec.name, MODEL)
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertEqual(
      set(response.outputs),
      {"part_labels", "part_centers", "part_affines", "foreground_fraction"},
    )
    self._check_against_reference(images, response.outputs)
    # Any input size: labels come back at that size, poses in its pixels.
    odd = np.random.default_rng(3).integers(0, 256, (1, 45, 80, 3), dtype=np.uint8)
    response = self.stub.Predict(_predict_request({"images": odd}), timeout=RPC_TIMEOUT)
    self._check_against_reference(odd, response.outputs)

  def test_encoded_round_trip(self):
    images = _images()
    blobs = np.array([_png(image) for image in images], dtype=object)
    response = self.stub.Predict(
      _predict_request({"images": blobs}, signature="serve_encoded"), timeout=RPC_TIMEOUT
    )
    self.assertAllEqual(tf.make_ndarray(response.outputs["image_sizes"]), [[64, 64], [64, 64]])
    self._check_against_reference(images, response.outputs, labels_at_model_size=True)

  def test_output_filter(self):
    response = self.stub.Predict(
      _predict_request({"images": _images()}, output_filter=["part_centers"]), timeout=RPC_TIMEOUT
    )
    self.assertEqual(list(response.outputs), ["part_centers"])

  def test_metadata(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = self.stub.GetModelMetadata(request, timeout=RPC_TIMEOUT)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    for name in export_lib.SIGNATURES:
      self.assertIn(name, signature_map.signature_def)
    response = self.stub.Predict(
      _predict_request({"dummy": np.zeros([1], np.int32)}, signature="metadata"),
      timeout=RPC_TIMEOUT,
    )
    names = [n.decode() for n in tf.make_ndarray(response.outputs["part_names"])[0]]
    self.assertEqual(names, ["background", "part_1", "part_2", "part_3"])
    self.assertEqual(int(tf.make_ndarray(response.outputs["num_parts"])[0]), 3)

  def test_model_status(self):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = self.model_stub.GetModelStatus(request, timeout=RPC_TIMEOUT)
    states = {s.version: s.state for s in response.model_version_status}
    self.assertEqual(states.get(1), AVAILABLE)
    request.model_spec.name = "nope"
    with self.assertRaises(grpc.RpcError) as caught:
      self.model_stub.GetModelStatus(request, timeout=RPC_TIMEOUT)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

  @parameterized.expand(BAD_REQUESTS)
  def test_bad_request(self, name, make_request, code):
    del name
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.Predict(make_request(), timeout=RPC_TIMEOUT)
    self.assertEqual(caught.exception.code(), code, caught.exception.details())
    self.assertTrue(caught.exception.details())
    # The server keeps serving.
    response = self.stub.Predict(
      _predict_request({"dummy": np.zeros([1], np.int32)}, signature="metadata"),
      timeout=RPC_TIMEOUT,
    )
    self.assertIn("part_names", response.outputs)


class LocalServerTest(ClientContractMixin, tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.server = server_lib.create_server(_MODULE["base"], MODEL, port=0, poll_seconds=0)
    cls.address = cls.server.address
    cls.open_channel()

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.stop(grace=1.0)
    super().tearDownClass()

  def test_binds_loopback(self):
    self.assertStartsWith(self.address, "127.0.0.1:")

  def test_error_messages(self):
    messages = {}
    for name, make_request, _ in BAD_REQUESTS:
      try:
        self.stub.Predict(make_request(), timeout=RPC_TIMEOUT)
      except grpc.RpcError as error:
        messages[name] = error.details()
    self.assertIn("must be uint8, got float32", messages["wrong_dtype"])
    self.assertIn("must have shape [?, ?, ?, 3], got [64, 64, 3]", messages["wrong_rank"])
    self.assertIn("empty", messages["zero_batch"])
    self.assertIn("too large", messages["too_large"])
    self.assertIn("Missing but required: {images}", messages["missing_input"])
    self.assertIn("Sent extra: {extra}", messages["extra_input"])
    self.assertIn("not a PNG/JPEG/GIF/BMP image", messages["undecodable_image"])
    self.assertEqual(messages["unknown_signature"], 'Serving signature key "nope" not found.')
    self.assertEqual(messages["unknown_model"], "Servable not found for request: Latest(nope)")
    self.assertEqual(
      messages["unknown_version"], "Servable not found for request: Specific(copart, 99)"
    )

  @parameterized.expand(
    [
      ("predict", "/tensorflow.serving.PredictionService/Predict", "PredictRequest"),
      ("metadata", "/tensorflow.serving.PredictionService/GetModelMetadata", "GetModelMetadata"),
      ("status", "/tensorflow.serving.ModelService/GetModelStatus", "GetModelStatusRequest"),
      ("classify", "/tensorflow.serving.PredictionService/Classify", "ClassificationRequest"),
    ]
  )
  def test_garbage_bytes(self, name, method, type_name):
    # Raw bytes that are no protobuf message: INVALID_ARGUMENT (as TF Serving), one log line.
    del name
    call = self.channel.unary_unary(method)  # no serializers: bytes go on the wire as they are
    with self.assertLogs(level="DEBUG") as logs:
      with self.assertRaises(grpc.RpcError) as caught:
        call(b"\xff\xff\xff\xff\x00 not a protobuf", timeout=RPC_TIMEOUT)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertIn("Could not parse the request (20 bytes)", caught.exception.details())
    self.assertIn(type_name, caught.exception.details())
    about = [r for r in logs.records if "parse" in r.getMessage().lower()]
    self.assertLen(about, 1, [r.getMessage() for r in logs.records])
    self.assertEqual(about[0].levelname, "WARNING")
    self.assertIn(method, about[0].getMessage())
    self.assertNotIn("\n", about[0].getMessage())
    self.assertFalse([r for r in logs.records if r.exc_info], "no traceback is logged")
    # The server keeps serving.
    response = self.stub.Predict(
      _predict_request({"dummy": np.zeros([1], np.int32)}, signature="metadata"),
      timeout=RPC_TIMEOUT,
    )
    self.assertIn("part_names", response.outputs)

  def test_unimplemented_methods(self):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.Classify(request, timeout=RPC_TIMEOUT)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

  def test_message_limits(self):
    # A request over the receive limit is refused by gRPC itself...
    big = np.zeros([1, 1300, 1300, 3], np.uint8)  # 5 MB > 4 MB default
    with client_lib.make_channel(self.address, max_message_bytes=8 << 20) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      with self.assertRaises(grpc.RpcError) as caught:
        stub.Predict(_predict_request({"images": big}), timeout=RPC_TIMEOUT)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # ... and a response over the send limit is a clear RESOURCE_EXHAUSTED.
    service = service_lib.PredictionService(self.server.manager, max_send_message_bytes=1000)
    with self.assertRaises(validation.ServingError) as caught:
      service.predict(_predict_request({"images": _images()}))
    self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
    self.assertIn("--max_send_message_bytes", caught.exception.message)

  def _spy(self, seen):
    """The live servable with its functions recording each call's batch size."""
    real = self.server.manager.servable

    def wrap(fn):
      def call(**inputs):
        seen.append(int(next(iter(inputs.values())).shape[0]))
        return fn(**inputs)

      return call

    spy = mock.Mock(spec=["name", "version", "signature_defs", "functions"])
    spy.name, spy.version, spy.signature_defs = real.name, real.version, real.signature_defs
    spy.functions = {key: wrap(fn) for key, fn in real.functions.items()}
    return spy

  def test_image_cap_refuses_a_hostile_batch_before_decoding(self):
    # Issue 19 item 6: 4000 tiny PNGs (well under the 4 MB receive cap).
    tiny = _png(np.zeros([16, 16, 3], np.uint8))
    request = _predict_request(
      {"images": np.array([tiny] * 4000, dtype=object)}, signature="serve_encoded"
    )
    self.assertLess(request.ByteSize(), validation.DEFAULT_MESSAGE_BYTES)
    with self.assertRaises(grpc.RpcError) as caught:
      self.stub.Predict(request, timeout=RPC_TIMEOUT)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertIn("batch of 4000", caught.exception.details())
    self.assertIn(
      f"limit of {validation.DEFAULT_MAX_IMAGES_PER_REQUEST} images per request "
      "(--max_images_per_request)",
      caught.exception.details(),
    )
    seen = []
    service = service_lib.PredictionService(self.server.manager, max_images_per_request=2)
    for signature, images in (("serve_encoded", [tiny] * 3), ("", np.zeros([3, 8, 8, 3]))):
      images = np.array(images, dtype=object if signature else np.uint8)
      request = _predict_request({"images": images}, signature=signature)
      with self.assertRaisesRegex(validation.ServingError, "--max_images_per_request"):
        service.run_predict(self._spy(seen), request)
    self.assertEqual(seen, [])  # the model never ran

  def test_pixel_budget_is_checked_from_headers_before_decoding(self):
    # PNGs whose header says 64x64 but whose pixel data is cut: decoding them would fail with
    # INVALID_ARGUMENT; the budget refuses them first, from the headers alone.
    cut = _png(make_images()[0])[:60]
    service = service_lib.PredictionService(self.server.manager, max_decoded_pixels=3 * 64 * 64 - 1)
    seen = []
    request = _predict_request({"images": np.array([cut] * 3, object)}, signature="serve_encoded")
    with self.assertRaises(validation.ServingError) as caught:
      service.run_predict(self._spy(seen), request)
    self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
    self.assertIn("12288 pixels", caught.exception.message)
    self.assertIn(f"budget of {3 * 64 * 64 - 1} pixels per request", caught.exception.message)
    self.assertIn("--max_decoded_pixels", caught.exception.message)
    with self.assertRaisesRegex(validation.ServingError, "--max_decoded_pixels") as caught:
      service.run_predict(self._spy(seen), _predict_request({"images": make_images()}))
    self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
    self.assertEqual(seen, [])
    # Within the budget the same request is served.
    request = _predict_request({"images": make_images()[:2]})
    self.assertIn("part_labels", service.run_predict(self._spy(seen), request).outputs)

  def test_batches_run_in_chunks_with_the_same_results(self):
    images = np.concatenate([make_images(1), make_images(2)])[:5]
    pngs = np.array([_png(image) for image in images], object)
    whole = service_lib.PredictionService(self.server.manager)
    by_count = service_lib.PredictionService(self.server.manager, chunk_images=2)
    by_pixels = service_lib.PredictionService(self.server.manager, chunk_pixels=3 * 64 * 64)
    for signature, inputs in (("", images), ("serve_encoded", pngs)):
      request = _predict_request({"images": inputs}, signature=signature)
      seen = []
      expected = whole.run_predict(self._spy(seen), request)
      self.assertEqual(seen, [5])
      for service, chunks in ((by_count, [2, 2, 1]), (by_pixels, [3, 2])):
        seen = []
        got = service.run_predict(self._spy(seen), request)
        self.assertEqual(seen, chunks)
        self.assertEqual(sorted(got.outputs), sorted(expected.outputs))
        for key in expected.outputs:
          want, have = tf.make_ndarray(expected.outputs[key]), tf.make_ndarray(got.outputs[key])
          self.assertEqual(want.shape, have.shape, key)
          if key == "part_labels":  # argmax ties may flip under other batch sizes' rounding
            self.assertGreater(np.mean(want == have), 0.999, key)
          else:
            self.assertAllClose(want, have, atol=1e-3, msg=key)

  def test_oversized_response_is_refused_after_the_first_chunk(self):
    pngs = np.array([_png(image) for image in make_images()] * 2, object)  # 6 images
    request = _predict_request({"images": pngs}, signature="serve_encoded")
    one_image = 64 * 64 + 200  # labels at 64x64 plus the small outputs, roughly
    service = service_lib.PredictionService(
      self.server.manager, chunk_images=2, max_send_message_bytes=4 * one_image
    )
    seen = []
    with self.assertRaises(validation.ServingError) as caught:
      service.run_predict(self._spy(seen), request)
    self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
    self.assertIn("would be", caught.exception.message)
    self.assertIn("--max_send_message_bytes", caught.exception.message)
    self.assertEqual(seen, [2])  # one chunk, not the 6 images

  def test_client_cli(self):
    tmp = tempfile.mkdtemp(dir=_MODULE["tmp"])
    inputs = os.path.join(tmp, "in")
    os.makedirs(inputs)
    images = _images()
    Image.fromarray(images[0]).save(os.path.join(inputs, "still.png"))
    frames = [Image.fromarray(image) for image in images]
    frames[0].save(os.path.join(inputs, "clip.gif"), save_all=True, append_images=frames[1:])
    for signature in client_lib.SIGNATURES:
      out = os.path.join(tmp, signature)
      done = client_lib.run_client(self.address, inputs, out, signature=signature, timeout=60)
      self.assertEqual(done, 3)
      self.assertTrue(os.path.isfile(os.path.join(out, "still_overlay.png")))
      self.assertEqual(len(os.listdir(os.path.join(out, "clip"))), 2)
      with open(os.path.join(out, "still.json")) as f:
        still = json.load(f)
      self.assertEqual(still["part_names"], ["background", "part_1", "part_2", "part_3"])
      expected = _MODULE["reference"].segment(images[:1])
      centres = [p["center_xy"] for p in still["parts"]]
      self.assertAllClose(centres, expected["part_centers"][0], atol=1e-2)
      overlay = np.asarray(Image.open(os.path.join(out, "still_overlay.png")))
      self.assertEqual(overlay.shape, (64, 64, 3))
      with open(os.path.join(out, "clip.json")) as f:
        self.assertEqual(len(json.load(f)["frames"]), 2)
    with self.assertRaisesRegex(client_lib.ClientError, "NOT_FOUND"):
      client_lib.run_client(self.address, inputs, tmp, model_name="nope", timeout=60)
    with self.assertRaisesRegex(client_lib.ClientError, "no such file"):
      client_lib.run_client(self.address, os.path.join(tmp, "missing"), tmp)
    # The binary checks its flags before connecting: `error: ...`, exit status 2.
    bad = subprocess.run(
      [sys.executable, "-m", "serving.client", "--server=" + self.address],
      capture_output=True,
      env=CHILD_ENV,
      text=True,
      timeout=120,
    )
    self.assertEqual(bad.returncode, 2)
    self.assertIn("error: --input and --output are required", bad.stderr)


class VersionSwitchTest(tf.test.TestCase):
  """A new version dropped into the base path is served without a restart."""

  def test_new_version_is_served_without_restart(self):
    base = os.path.join(_MODULE["tmp"], "switch", MODEL)
    shutil.copytree(os.path.join(_MODULE["base"], "1"), os.path.join(base, "1"))
    server = server_lib.create_server(base, MODEL, port=0, poll_seconds=0.3)
    channel = client_lib.make_channel(server.address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    errors, versions, stop = [], [], threading.Event()

    def traffic():
      while not stop.is_set():
        try:
          response = stub.Predict(_predict_request({"images": _images()}), timeout=RPC_TIMEOUT)
          versions.append(response.model_spec.version.value)
        except grpc.RpcError as error:
          errors.append(error)

    thread = threading.Thread(target=traffic, daemon=True)
    try:
      thread.start()
      # Publish version 2 the way `export` does: write elsewhere, then one rename.
      staging = os.path.join(os.path.dirname(base), "staging")
      shutil.copytree(os.path.join(base, "1"), staging)
      os.rename(staging, os.path.join(base, "2"))
      deadline = time.time() + START_TIMEOUT
      while time.time() < deadline and (not versions or versions[-1] != 2):
        time.sleep(0.2)
      stop.set()
      thread.join(timeout=RPC_TIMEOUT)
      self.assertEqual(errors, [])
      self.assertEqual(versions[-1], 2)
      self.assertEqual(versions[0], 1)
      states = server.manager.states()
      self.assertEqual(states[2][0], AVAILABLE)
      self.assertEqual(states[1][0], END)
      # The old version is gone: asking for it is NOT_FOUND, as in TF Serving.
      with self.assertRaises(grpc.RpcError) as caught:
        stub.Predict(_predict_request({"images": _images()}, version=1), timeout=RPC_TIMEOUT)
      self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
      # A broken version directory is reported and skipped; version 2 stays live.
      os.makedirs(os.path.join(base, "3"))
      with open(os.path.join(base, "3", "saved_model.pb"), "wb") as f:
        f.write(b"garbage")
      server.manager.poll()
      self.assertEqual(server.manager.servable.version, 2)
      self.assertEqual(server.manager.states()[3][0], END)
      self.assertTrue(server.manager.states()[3][1])
    finally:
      stop.set()
      channel.close()
      server.stop(grace=1.0)


def _read_lines(stream, lines):
  for line in iter(stream.readline, ""):
    lines.put(line)


class ServerBinaryTest(tf.test.TestCase):
  """`python -m serving.server`: prints its address, serves, stops cleanly on SIGTERM."""

  def test_serve_and_sigterm(self):
    proc = subprocess.Popen(
      [
        sys.executable,
        "-m",
        "serving.server",
        f"--model_base_path={_MODULE['base']}",
        "--port=0",
        "--file_system_poll_wait_seconds=0",
        "--nowarmup",
      ],
      env=CHILD_ENV,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
      line = lines.get(timeout=START_TIMEOUT)
      self.assertIn("serving model 'copart' (version 1)", line)
      address = line.split()[-1]
      self.assertStartsWith(address, "127.0.0.1:")
      with client_lib.make_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(_predict_request({"images": _images()}), timeout=RPC_TIMEOUT)
        self.assertEqual(response.model_spec.version.value, 1)
      proc.send_signal(signal.SIGTERM)
      self.assertEqual(proc.wait(timeout=120), 0)
      self.assertIn("server stopped", lines.get(timeout=10))
    finally:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      proc.stdout.close()
      proc.stderr.close()


def _free_port():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


class ModelServerBinaryTest(ClientContractMixin, tf.test.TestCase):
  """The same client contract against the real tensorflow_model_server, when installed."""

  exact = False  # another TensorFlow build: allow a few label flips at near-ties

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
      raise unittest.SkipTest(
        "tensorflow_model_server is not on PATH (it cannot be pip-installed; use the "
        "tensorflow/serving docker image, see serving/README.md), so the client contract ran "
        "against the local server only"
      )
    port = _free_port()
    cls.proc = subprocess.Popen(
      [
        binary,
        f"--port={port}",
        f"--model_name={MODEL}",
        f"--model_base_path={os.path.abspath(_MODULE['base'])}",
        "--file_system_poll_wait_seconds=1",
      ],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    cls.address = f"127.0.0.1:{port}"
    cls.open_channel()
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    deadline = time.time() + START_TIMEOUT
    while True:
      try:
        response = cls.model_stub.GetModelStatus(request, timeout=5)
        if any(s.state == AVAILABLE for s in response.model_version_status):
          break
      except grpc.RpcError:
        pass
      if time.time() > deadline or cls.proc.poll() is not None:
        cls.tearDownClass()
        raise RuntimeError("tensorflow_model_server did not load the model")
      time.sleep(0.5)

  @classmethod
  def tearDownClass(cls):
    if getattr(cls, "channel", None) is not None:
      cls.channel.close()
    if getattr(cls, "proc", None) is not None:
      cls.proc.terminate()
      try:
        cls.proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        cls.proc.kill()
        cls.proc.wait()
    super().tearDownClass()


if __name__ == "__main__":
  tf.test.main()
