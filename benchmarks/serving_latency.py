"""Latency and throughput of one SavedModel behind the local gRPC server (TF Serving's API).

Starts ``python -m serving.server`` on 127.0.0.1 (any free port) for `--export_base`, then

1. sends `--requests` sequential Predict calls with one `--request_size` x `--request_size` uint8
   image and reports the latency percentiles (p50 / p90 / p99, milliseconds);
2. runs `--concurrency` client threads for `--duration` seconds and reports requests per second;

prints one JSON object and stops the server (SIGTERM, then kill after a grace period).

  python benchmarks/serving_latency.py --export_base=exports/copart
  python benchmarks/serving_latency.py   # exports a random tiny model to a temp dir first

Client and server run in separate processes on the same machine, so the numbers include
serialisation and loopback gRPC, but not a network.
"""

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def export_random_model(base, preset, image_size, num_parts, seed=0):
  """Exports an untrained model (enough for timing) as version 1 under `base`."""
  import keras

  from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
  from copart_tf.export import saved_model as export_lib
  from copart_tf.model.copart_model import CoPartModel

  keras.utils.set_random_seed(seed)
  model = CoPartModel(num_parts=num_parts, preset=preset, image_size=image_size)
  model.build()
  return export_lib.export(model, base)


def start_server(base, model_name, max_workers, timeout, extra_args=()):
  """Starts the server subprocess (`extra_args`: more server flags); returns (process, address)."""
  proc = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "serving.server",
      f"--model_base_path={base}",
      f"--model_name={model_name}",
      "--port=0",
      "--file_system_poll_wait_seconds=0",
      f"--max_workers={max_workers}",
      *extra_args,
    ],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
    cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
  )
  lines = queue.Queue()

  def read():
    for line in iter(proc.stdout.readline, ""):
      lines.put(line)

  threading.Thread(target=read, daemon=True).start()
  deadline = time.time() + timeout
  while time.time() < deadline:
    try:
      line = lines.get(timeout=1.0)
    except queue.Empty:
      if proc.poll() is not None:
        break
      continue
    if line.startswith("serving model"):
      return proc, line.split()[-1]
  stop_server(proc)
  raise RuntimeError("the server did not start (run python -m serving.server by hand to see why)")


def stop_server(proc, grace=15.0):
  if proc.poll() is None:
    proc.send_signal(signal.SIGTERM)
    try:
      proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--export_base", default=None, help="Default: export a random model.")
  parser.add_argument("--model_name", default="copart")
  parser.add_argument("--signature", default="serving_default")
  parser.add_argument("--request_size", type=int, default=128)
  parser.add_argument("--requests", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--concurrency", type=int, default=8)
  parser.add_argument("--duration", type=float, default=5.0)
  parser.add_argument("--max_workers", type=int, default=8, help="Server request threads.")
  parser.add_argument("--timeout", type=float, default=60.0, help="Per-request deadline (s).")
  parser.add_argument("--start_timeout", type=float, default=300.0)
  parser.add_argument("--preset", default="tiny", help="Random model only.")
  parser.add_argument("--image_size", type=int, default=64, help="Random model only.")
  parser.add_argument("--num_parts", type=int, default=4, help="Random model only.")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  import grpc
  import tensorflow as tf
  from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

  from serving import client as client_lib

  tmp = None
  base = args.export_base
  if base is None:
    tmp = tempfile.mkdtemp(prefix="copart_latency_")
    base = os.path.join(tmp, "copart")
    export_random_model(base, args.preset, args.image_size, args.num_parts, args.seed)
  proc = None
  try:
    proc, address = start_server(base, args.model_name, args.max_workers, args.start_timeout)
    rng = np.random.default_rng(args.seed)
    image = rng.integers(0, 256, (1, args.request_size, args.request_size, 3), dtype=np.uint8)
    if args.signature == "serve_encoded":
      inputs = {"images": np.array([client_lib.encode_png(image[0])], dtype=object)}
    else:
      inputs = {"images": image}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model_name
    request.model_spec.signature_name = args.signature
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))

    channel = client_lib.make_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for _ in range(args.warmup):
      response = stub.Predict(request, timeout=args.timeout)
    version = response.model_spec.version.value if args.warmup else None
    latencies = []
    for _ in range(args.requests):
      start = time.perf_counter()
      stub.Predict(request, timeout=args.timeout)
      latencies.append((time.perf_counter() - start) * 1000.0)

    counts, errors, stop = [0] * args.concurrency, [], threading.Event()

    def worker(i):
      worker_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      while not stop.is_set():
        try:
          worker_stub.Predict(request, timeout=args.timeout)
          counts[i] += 1
        except grpc.RpcError as error:
          errors.append(error.code().name)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
      thread.start()
    time.sleep(args.duration)
    stop.set()
    for thread in threads:
      thread.join()
    elapsed = time.perf_counter() - started
    channel.close()

    lat = np.asarray(latencies)
    result = {
      "export_base": base,
      "version": version,
      "signature": args.signature,
      "request": f"1x{args.request_size}x{args.request_size}x3 uint8",
      "latency_ms": {
        "n": len(lat),
        "p50": round(float(np.percentile(lat, 50)), 2),
        "p90": round(float(np.percentile(lat, 90)), 2),
        "p99": round(float(np.percentile(lat, 99)), 2),
        "mean": round(float(lat.mean()), 2),
      },
      "throughput": {
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 2),
        "requests": int(sum(counts)),
        "requests_per_second": round(sum(counts) / elapsed, 2),
        "errors": len(errors),
      },
      "cpu_count": os.cpu_count(),
      "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if tmp is not None:
      result["random_model"] = {
        "preset": args.preset,
        "image_size": args.image_size,
        "num_parts": args.num_parts,
      }
    print(json.dumps(result, indent=2))
  finally:
    if proc is not None:
      stop_server(proc)
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
