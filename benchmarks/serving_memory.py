"""Peak server memory for the worst requests the local gRPC server's limits admit.

Starts ``python -m serving.server`` on 127.0.0.1 (any free port) once per scenario, so each
scenario's peak RSS (``VmHWM`` of the server process, from /proc) is its own, sends one request
(deadline `--timeout`), records the status, the wall time and the server's RSS before / peak /
after, prints one JSON object and stops the server (SIGTERM, then kill after a grace period).

Scenarios (`serve_encoded` unless noted; the limits are the server's defaults unless given):

- ``hostile_4000_tiny_pngs``: 4000 16x16 PNGs (~0.6 MB, under the 4 MB receive cap), the request
  of issue 19 item 6: must be refused before any decoding;
- ``max_images_tiny_pngs``: `--max_images_per_request` 16x16 PNGs (the most images admitted);
- ``pixel_budget_large_pngs``: PNGs of `--max_image_side` sides whose pixels add up to
  `--max_decoded_pixels` (the most decoded pixels admitted; a noise-free picture compresses to a
  few kB per image);
- ``dense_uint8``: ``serving_default`` with the largest uint8 batch of 64x64 images under the
  receive cap and the image cap.

  python benchmarks/serving_memory.py                       # a random small model (S = 128)
  python benchmarks/serving_memory.py --export_base=exports/copart
  python benchmarks/serving_memory.py --server_flags=--max_images_per_request=100000,...

Linux only (reads /proc/<pid>/status).
"""

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import serving_latency  # noqa: E402  (the sibling benchmark: export and server start/stop)

from serving import validation  # noqa: E402


def rss_mb(pid):
  """(current RSS, peak RSS) of process `pid` in MB from /proc/<pid>/status; None if it is gone."""
  values = {}
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith(("VmRSS:", "VmHWM:")):
          key, kb = line.split()[:2]
          values[key[:-1]] = int(kb) / 1024.0
  except OSError:
    return None, None
  if len(values) < 2:  # a zombie: the server has exited
    return None, None
  return round(values["VmRSS"], 1), round(values["VmHWM"], 1)


def png(height, width, seed=0):
  """PNG bytes of a smooth picture (compresses well, is not blank)."""
  from PIL import Image

  y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
  x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
  image = np.stack([y + 0 * x, 0 * y + x, np.full((height, width), 40 + seed % 200)], axis=-1)
  buffer = io.BytesIO()
  Image.fromarray(image.astype(np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


def scenarios(args):
  """name -> (signature, inputs dict of NumPy arrays)."""
  tiny = png(16, 16)
  side = args.max_image_side
  large = max(1, args.max_decoded_pixels // (side * side))
  max_n = min(args.max_images_per_request, (args.max_receive_message_bytes - 1024) // (64 * 64 * 3))
  return {
    "hostile_4000_tiny_pngs": ("serve_encoded", {"images": np.array([tiny] * 4000, object)}),
    "max_images_tiny_pngs": (
      "serve_encoded",
      {"images": np.array([tiny] * args.max_images_per_request, object)},
    ),
    "pixel_budget_large_pngs": (
      "serve_encoded",
      {"images": np.array([png(side, side, i) for i in range(large)], object)},
    ),
    "dense_uint8": ("serving_default", {"images": np.zeros((max_n, 64, 64, 3), np.uint8)}),
  }


def run_scenario(base, name, signature, inputs, args):
  import grpc
  import tensorflow as tf
  from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

  from serving import client as client_lib

  flags = [f for f in args.server_flags.split(",") if f]
  proc, address = serving_latency.start_server(
    base, args.model_name, 1, args.start_timeout, extra_args=flags
  )
  try:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model_name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    channel = client_lib.make_channel(address, max_message_bytes=64 * 1024 * 1024)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    time.sleep(1.0)  # let the warm-up's allocations settle
    before, _ = rss_mb(proc.pid)
    started = time.perf_counter()
    try:
      response = stub.Predict(request, timeout=args.timeout)
      status, detail = "OK", f"{response.ByteSize()} response bytes"
    except grpc.RpcError as error:
      status, detail = error.code().name, error.details()
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    after, peak = rss_mb(proc.pid)
    if proc.poll() is not None:
      detail = f"the server exited with status {proc.returncode} ({detail})"
    channel.close()
  finally:
    serving_latency.stop_server(proc)
  return {
    "signature": signature,
    "images": int(len(next(iter(inputs.values())))),
    "request_bytes": request.ByteSize(),
    "status": status,
    "detail": detail[:300],
    "seconds": round(seconds, 2),
    "rss_mb_before": before,
    "rss_mb_peak": peak,
    "rss_mb_after": after,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--export_base", default=None, help="Default: export a random model.")
  parser.add_argument("--model_name", default="copart")
  parser.add_argument("--scenarios", default="", help="Comma-separated names; default: all.")
  parser.add_argument(
    "--server_flags", default="", help="Comma-separated extra server flags (e.g. limits)."
  )
  parser.add_argument(
    "--max_images_per_request", type=int, default=validation.DEFAULT_MAX_IMAGES_PER_REQUEST
  )
  parser.add_argument(
    "--max_decoded_pixels", type=int, default=validation.DEFAULT_MAX_DECODED_PIXELS
  )
  parser.add_argument("--max_image_side", type=int, default=validation.DEFAULT_MAX_IMAGE_SIDE)
  parser.add_argument(
    "--max_receive_message_bytes", type=int, default=validation.DEFAULT_MESSAGE_BYTES
  )
  parser.add_argument("--timeout", type=float, default=300.0, help="Per-request deadline (s).")
  parser.add_argument("--start_timeout", type=float, default=300.0)
  parser.add_argument("--preset", default="small", help="Random model only.")
  parser.add_argument("--image_size", type=int, default=128, help="Random model only.")
  parser.add_argument("--num_parts", type=int, default=10, help="Random model only.")
  args = parser.parse_args(argv)

  tmp = None
  base = args.export_base
  if base is None:
    tmp = tempfile.mkdtemp(prefix="copart_memory_")
    base = os.path.join(tmp, "copart")
    serving_latency.export_random_model(base, args.preset, args.image_size, args.num_parts)
  try:
    wanted = [s for s in args.scenarios.split(",") if s]
    results = {}
    for name, (signature, inputs) in scenarios(args).items():
      if wanted and name not in wanted:
        continue
      results[name] = run_scenario(base, name, signature, inputs, args)
      print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    out = {
      "export_base": base,
      "server_flags": args.server_flags,
      "limits": {
        "max_images_per_request": args.max_images_per_request,
        "max_decoded_pixels": args.max_decoded_pixels,
        "max_image_side": args.max_image_side,
      },
      "scenarios": results,
      "cpu_count": os.cpu_count(),
      "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if tmp is not None:
      out["random_model"] = {
        "preset": args.preset,
        "image_size": args.image_size,
        "num_parts": args.num_parts,
      }
    print(json.dumps(out, indent=2))
  finally:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
