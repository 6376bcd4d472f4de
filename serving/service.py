"""Request handling of the local server and its gRPC glue.

`PredictionService` answers Predict, GetModelMetadata and GetModelStatus for the live version of
a `serving.versions.ModelManager` (no gRPC types except status codes); `servicers` wraps it in
the PredictionService and ModelService servicers, and `add_servicer` registers them so that
request bytes that do not parse answer INVALID_ARGUMENT with one log line.
"""

import grpc
import numpy as np
from absl import logging

from serving import validation

# A request's images run through the model in chunks of at most this many images / pixels.
DEFAULT_CHUNK_IMAGES = 16
DEFAULT_CHUNK_PIXELS = (
  validation.DEFAULT_MAX_IMAGE_SIDE * validation.DEFAULT_MAX_IMAGE_SIDE
)  # one largest image
DEFAULT_SIGNATURE = "serving_default"

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _model_spec_text(spec):
  if spec.HasField("version"):
    return f"Specific({spec.name}, {spec.version.value})"
  if spec.version_label:
    return f"Labelled({spec.name}, {spec.version_label})"
  return f"Latest({spec.name})"


class PredictionService(validation.RequestChecks):
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
    max_image_side=validation.DEFAULT_MAX_IMAGE_SIDE,
    max_send_message_bytes=validation.DEFAULT_MESSAGE_BYTES,
    max_receive_message_bytes=validation.DEFAULT_MESSAGE_BYTES,
    max_images_per_request=validation.DEFAULT_MAX_IMAGES_PER_REQUEST,
    max_decoded_pixels=validation.DEFAULT_MAX_DECODED_PIXELS,
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
      raise validation.ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name")
    servable = self.manager.servable
    if spec.name != self.manager.name or servable is None:
      raise validation.ServingError(
        grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {_model_spec_text(spec)}"
      )
    if spec.version_label:
      raise validation.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Unrecognized servable version label: {spec.version_label}",
      )
    if spec.HasField("version") and spec.version.value != servable.version:
      raise validation.ServingError(
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
      raise validation.ServingError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f'Serving signature key "{signature_name}" not found.',
      )
    inputs, pixels = self._check_inputs(signature, request)
    outputs = list(request.output_filter)
    for alias in outputs:
      if alias not in signature.outputs:
        raise validation.ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"output tensor alias not found in signature: {alias} Outputs expected to be in the "
          f"set {{{','.join(sorted(signature.outputs))}}}.",
        )
    if len(set(outputs)) != len(outputs):
      raise validation.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias"
      )
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
        raise validation.ServingError(code, validation.first_line(error)) from None
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

  # ---------------------------------------------------------------- metadata and status

  def get_model_metadata(self, request):
    from tensorflow_serving.apis import get_model_metadata_pb2

    if not request.HasField("model_spec"):
      raise validation.ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
      raise validation.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
      )
    for field in request.metadata_field:
      if field != "signature_def":
        raise validation.ServingError(
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
      raise validation.ServingError(
        grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
      )
    if spec.version_label:
      raise validation.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Unrecognized servable version label: {spec.version_label}",
      )
    if spec.HasField("version"):
      if spec.version.value not in states:
        raise validation.ServingError(
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


def _lenient_parser(method, message_class):
  """`message_class.FromString` that returns an `UnparsableRequest` instead of raising."""

  def parse(data):
    try:
      return message_class.FromString(data)
    except Exception as error:  # DecodeError, and whatever else a corrupt message raises
      return validation.UnparsableRequest(
        method, message_class.DESCRIPTOR.full_name, len(data), error
      )

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


def servicers(service):
  """The two gRPC servicers around a `PredictionService`."""
  from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

  def handle(fn, request, context):
    if isinstance(request, validation.UnparsableRequest):
      logging.warning("%s", request.log_line())
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
    try:
      return fn(request)
    except validation.ServingError as error:
      context.abort(error.code, error.message)
    except Exception as error:  # never take the server down
      logging.exception("internal error")
      context.abort(grpc.StatusCode.INTERNAL, f"internal error: {validation.first_line(error)}")

  def unimplemented(method):
    def fn(self, request, context):
      del self
      if isinstance(request, validation.UnparsableRequest):
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
