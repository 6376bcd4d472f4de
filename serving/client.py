"""Segments images or videos through a TF Serving gRPC endpoint and writes overlays + JSON.

  python -m serving.client --server=127.0.0.1:8500 --model_name=copart --input=IMAGE|VIDEO|DIR \
      --output=DIR [--signature=serving_default|serve_encoded] [--timeout=10]

Only TF Serving's standard API is used (`PredictionServiceStub`: GetModelMetadata, Predict), so
the same command works against tensorflow_model_server and `python -m serving.server`.

For every input it writes ``<name>_overlay.png`` (parts coloured over the image, centres and axes
drawn) and ``<name>.json`` (part names, centres and poses in pixels, foreground fraction). A video
(or a frame folder) gives ``<name>/<frame>_overlay.png`` and one ``<name>.json`` with a list of
frames. A directory input processes each image, video and frame folder inside it.
"""

import io
import json
import os
import sys

import grpc
import numpy as np
from absl import app, flags

DEFAULT_MESSAGE_BYTES = 4 * 1024 * 1024
SIGNATURES = ("serving_default", "serve_encoded")


class ClientError(Exception):
  """A user-facing client failure (bad input path, server error)."""


def make_channel(server, max_message_bytes=DEFAULT_MESSAGE_BYTES):
  """An insecure channel with both message limits set."""
  return grpc.insecure_channel(
    server,
    options=[
      ("grpc.max_send_message_length", int(max_message_bytes)),
      ("grpc.max_receive_message_length", int(max_message_bytes)),
    ],
  )


class CopartClient:
  """Thin wrapper over `PredictionServiceStub` for copart exports.

  Args:
    channel: a gRPC channel (`make_channel`).
    model_name: ModelSpec.name.
    timeout: deadline of each call, seconds.
    version: optional model version (None = the server's latest).
  """

  def __init__(self, channel, model_name="copart", timeout=10.0, version=None):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    self.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    self.model_name = model_name
    self.timeout = float(timeout)
    self.version = version

  def _spec(self, spec, signature=None):
    spec.name = self.model_name
    if self.version is not None:
      spec.version.value = int(self.version)
    if signature:
      spec.signature_name = signature

  def signature_defs(self):
    """{name: SignatureDef} from GetModelMetadata."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    self._spec(request.model_spec)
    response = self.stub.GetModelMetadata(request, timeout=self.timeout)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return dict(signature_map.signature_def)

  def predict(self, signature, inputs, output_filter=()):
    """One Predict call: {name: ndarray} -> ({name: ndarray}, response model_spec)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    self._spec(request.model_spec, signature)
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    response = self.stub.Predict(request, timeout=self.timeout)
    return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}, response

  def metadata(self):
    """Part names and sizes from the ``metadata`` signature (defaults if the model has none)."""
    outputs, _ = self.predict("metadata", {"dummy": np.zeros([1], np.int32)})
    return {
      "part_names": [n.decode("utf-8") for n in outputs["part_names"][0]],
      "num_parts": int(outputs["num_parts"][0]),
      "image_size": int(outputs["image_size"][0]),
    }

  def segment(self, images, signature="serving_default"):
    """uint8 `[N, H, W, 3]` images (same size) -> outputs with labels at H x W.

    With ``serve_encoded`` the images are PNG-encoded here and the model-size labels are resized
    back to H x W (nearest).
    """
    images = np.asarray(images, np.uint8)
    if signature == "serve_encoded":
      blobs = np.array([encode_png(image) for image in images], dtype=object)
      return self.segment_encoded(blobs, [images.shape[1:3]] * len(images))
    outputs, _ = self.predict(signature, {"images": images})
    return outputs

  def segment_encoded(self, blobs, sizes=None):
    """PNG/JPEG bytes `[N]` -> outputs with labels resized back to each image's size (a list)."""
    outputs, _ = self.predict("serve_encoded", {"images": np.asarray(blobs, dtype=object)})
    sizes = outputs["image_sizes"] if sizes is None else sizes
    labels = [
      resize_nearest(lab, int(h), int(w))
      for lab, (h, w) in zip(outputs["part_labels"], sizes, strict=True)
    ]
    outputs["part_labels"] = labels
    return outputs


def encode_png(image):
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
  return buffer.getvalue()


def resize_nearest(labels, height, width):
  """Nearest resize of `[h, w]` labels to `[height, width]` (half-pixel centres, like TF)."""
  h, w = labels.shape
  rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
  cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
  return labels[rows[:, None], cols[None, :]]


def pixel_poses_to_normalized(affines, height, width):
  """Pixel poses `[K, 2, 3]` (canonical -> pixels) -> normalised poses (for `draw_part_axes`)."""
  scale = np.array([width, height], np.float32) / 2.0
  out = np.array(affines, np.float32)
  out[..., :2] /= scale[:, None]
  out[..., 2] = (out[..., 2] - (scale - 0.5)) / scale
  return out


def render(image, outputs, index, palette):
  """Overlay of one result: parts coloured, centres and axes drawn."""
  from copart_tf.training import visualize

  labels = np.asarray(outputs["part_labels"][index])
  picture = visualize.overlay_parts(image, labels, palette=palette)
  height, width = image.shape[:2]
  poses = pixel_poses_to_normalized(outputs["part_affines"][index], height, width)
  return visualize.draw_part_axes(picture, poses, palette=palette, axis_scale=0.25)


def record(outputs, index, names):
  """JSON-able summary of one result."""
  centers = np.asarray(outputs["part_centers"][index], np.float64)
  affines = np.asarray(outputs["part_affines"][index], np.float64)
  parts = []
  for k in range(centers.shape[0]):
    label = k + 1
    parts.append(
      {
        "label": label,
        "name": names[label] if label < len(names) else f"part_{label}",
        "center_xy": [round(float(v), 3) for v in centers[k]],
        "affine": [[round(float(v), 5) for v in row] for row in affines[k]],
        "area_fraction": round(
          float(np.mean(np.asarray(outputs["part_labels"][index]) == label)), 5
        ),
      }
    )
  return {
    "foreground_fraction": round(float(outputs["foreground_fraction"][index]), 5),
    "parts": parts,
  }


def _save_png(path, image):
  from PIL import Image

  Image.fromarray(image).save(path)


def list_inputs(path):
  """[(kind, path)] with kind "image" or "video" for a file, a frame folder or a directory."""
  from copart_tf.data import video_io

  if os.path.isfile(path):
    if video_io.is_image_file(path):
      return [("image", path)]
    if video_io.is_video_file(path):
      return [("video", path)]
    raise ClientError(f"{path}: not an image (png/jpg/bmp) or video (mp4/mov/avi/mkv/webm/gif)")
  if not os.path.isdir(path):
    raise ClientError(f"{path}: no such file or directory")
  items = []
  for name in sorted(os.listdir(path)):
    if name.startswith("."):
      continue
    full = os.path.join(path, name)
    if os.path.isdir(full):
      if video_io.list_frame_files(full):
        items.append(("video", full))
    elif video_io.is_image_file(full):
      items.append(("image", full))
    elif video_io.is_video_file(full):
      items.append(("video", full))
  if not items:
    raise ClientError(f"{path}: no images, videos or frame folders inside")
  return items


def _stem(path):
  return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def process_image(client, path, out_dir, signature, meta, palette):
  from copart_tf.data import video_io

  image = video_io.read_image(path)
  if signature == "serve_encoded" and os.path.splitext(path)[1].lower() in (
    ".png",
    ".jpg",
    ".jpeg",
  ):
    with open(path, "rb") as f:
      outputs = client.segment_encoded([f.read()], [image.shape[:2]])
  else:
    outputs = client.segment(image[None], signature)
  stem = _stem(path)
  overlay = os.path.join(out_dir, f"{stem}_overlay.png")
  _save_png(overlay, render(image, outputs, 0, palette))
  result = {"input": path, "overlay": overlay, "height": image.shape[0], "width": image.shape[1]}
  result.update(part_names=meta["part_names"], **record(outputs, 0, meta["part_names"]))
  with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
    json.dump(result, f, indent=2)
  return 1


def process_video(client, path, out_dir, signature, meta, palette, max_frames=0):
  from copart_tf.data import video_io

  stem = _stem(path)
  frame_dir = os.path.join(out_dir, stem)
  os.makedirs(frame_dir, exist_ok=True)
  frames = []
  stream = video_io.iterate_video_frames(path)
  try:
    for t, image in enumerate(stream):
      if max_frames and t >= max_frames:
        break
      outputs = client.segment(image[None], signature)
      overlay = os.path.join(frame_dir, f"{t:05d}_overlay.png")
      _save_png(overlay, render(image, outputs, 0, palette))
      frames.append({"frame": t, "overlay": overlay, **record(outputs, 0, meta["part_names"])})
  finally:
    stream.close()
  result = {"input": path, "fps": getattr(stream, "fps", None), "part_names": meta["part_names"]}
  result["frames"] = frames
  with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
    json.dump(result, f, indent=2)
  return len(frames)


def run_client(
  server,
  input_path,
  output_dir,
  model_name="copart",
  signature="serving_default",
  timeout=10.0,
  max_message_bytes=DEFAULT_MESSAGE_BYTES,
  version=None,
  max_frames=0,
):
  """Segments everything at `input_path` through `server`; returns the number of images done.

  Raises:
    ClientError: bad input or output path, or a server error (the message has the gRPC status).
  """
  from copart_tf.errors import CopartError
  from copart_tf.evaluation.report import part_palette

  if signature not in SIGNATURES:
    raise ClientError(f"--signature must be one of {'|'.join(SIGNATURES)}, got {signature!r}")
  items = list_inputs(input_path)
  os.makedirs(output_dir, exist_ok=True)
  channel = make_channel(server, max_message_bytes)
  try:
    client = CopartClient(channel, model_name, timeout, version)
    try:
      signatures = client.signature_defs()
      if signature not in signatures:
        raise ClientError(
          f"model {model_name!r} has no signature {signature!r} (it has {sorted(signatures)})"
        )
      if "metadata" in signatures:
        meta = client.metadata()
      else:
        k = signatures[signature].outputs["part_centers"].tensor_shape.dim[1].size
        meta = {"part_names": ["background"] + [f"part_{i}" for i in range(1, k + 1)]}
      palette = part_palette(len(meta["part_names"]) - 1)
      done = 0
      for kind, path in items:
        fn = process_image if kind == "image" else process_video
        kwargs = {} if kind == "image" else {"max_frames": max_frames}
        done += fn(client, path, output_dir, signature, meta, palette, **kwargs)
    except grpc.RpcError as error:
      raise ClientError(f"{server}: {error.code().name}: {error.details()}") from None
    except CopartError as error:
      raise ClientError(str(error)) from None
  finally:
    channel.close()
  return done


def define_flags():
  """The binary's flags (defined on demand so the module can be imported next to the server)."""
  flags.DEFINE_string("server", "127.0.0.1:8500", "host:port of the gRPC endpoint.")
  flags.DEFINE_string("model_name", "copart", "Model name (ModelSpec.name).")
  flags.DEFINE_integer("model_version", None, "Model version (default: latest).")
  flags.DEFINE_string("input", None, "An image, a video / frame folder, or a directory.")
  flags.DEFINE_string("output", None, "Output directory for overlays and JSON.")
  flags.DEFINE_enum("signature", "serving_default", list(SIGNATURES), "Signature.")
  flags.DEFINE_float("timeout", 10.0, "Deadline of each call, seconds.")
  flags.DEFINE_integer(
    "max_message_bytes", DEFAULT_MESSAGE_BYTES, "gRPC send/receive limit, bytes."
  )
  flags.DEFINE_integer("max_frames", 0, "Frames per video (0 = all).")


def main(argv):
  f = flags.FLAGS
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)", file=sys.stderr)
    return 2
  if not f.input or not f.output:
    print("error: --input and --output are required", file=sys.stderr)
    return 2
  try:
    done = run_client(
      f.server,
      f.input,
      f.output,
      model_name=f.model_name,
      signature=f.signature,
      timeout=f.timeout,
      max_message_bytes=f.max_message_bytes,
      version=f.model_version,
      max_frames=f.max_frames,
    )
  except ClientError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"{done} image(s) segmented; overlays and JSON in {f.output}")
  return 0


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
