"""Serving measurement: wraps benchmarks/serving_latency.py (local gRPC server, Predict calls).

`benchmarks/serving_latency.py` starts ``python -m serving.server`` on 127.0.0.1 for an export
base, times sequential Predict calls (p50/p90/p99), then runs concurrent clients for a fixed time,
prints one JSON object and stops its server. We run it as a subprocess of its own (client and
server are then two processes besides ours, as in production) and return its JSON.
"""

import json
import os
import signal
import subprocess
import sys

from copart_tf.errors import ConfigError

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(_ROOT, "benchmarks", "serving_latency.py")
START_TIMEOUT_S = 300.0


def _stop_group(proc, grace=15.0):
  """SIGTERM, then SIGKILL, to the process group we started (script + its server)."""
  for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      return
    try:
      proc.wait(timeout=grace)
      return
    except subprocess.TimeoutExpired:
      continue


def measure_serve(export_base, config):
  """Runs serving_latency.py against `export_base` (newest version) and returns its result.

  Args:
    export_base: the exported model's base directory.
    config: `BenchmarkConfig` (serve_requests, warmup, serve_concurrency, serve_seconds,
      image_size: one uint8 image of the model size per request).

  Returns:
    serving_latency.py's JSON: latency_ms {n, p50, p90, p99, mean}, throughput {concurrency,
    seconds, requests, requests_per_second, errors}, plus ``command``.

  Raises:
    ConfigError: the script is missing (not a source checkout), or it failed.
  """
  if not os.path.exists(SCRIPT):
    raise ConfigError(
      f"--what=serve needs benchmarks/serving_latency.py from the source checkout ({SCRIPT} "
      "not found)"
    )
  args = [
    sys.executable,
    SCRIPT,
    f"--export_base={export_base}",
    f"--request_size={config.image_size}",
    f"--requests={config.serve_requests}",
    f"--warmup={max(config.warmup, 1)}",
    f"--concurrency={config.serve_concurrency}",
    f"--duration={config.serve_seconds}",
    f"--max_workers={config.serve_concurrency}",
    f"--start_timeout={START_TIMEOUT_S}",
  ]
  # Generous: server start, warm-up and sequential calls of a slow model, then the timed phase.
  timeout = START_TIMEOUT_S + config.serve_seconds + 60.0 * (config.serve_requests + 10)
  proc = subprocess.Popen(
    args,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    cwd=_ROOT,
    start_new_session=True,  # its own process group, so a timeout stops the server too
  )
  try:
    stdout, stderr = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    _stop_group(proc)
    raise ConfigError(f"serving_latency.py did not finish within {timeout:.0f} s") from None
  if proc.returncode != 0:
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    raise ConfigError(f"serving_latency.py failed (exit {proc.returncode}): {tail}")
  try:
    result = json.loads(stdout[stdout.index("{") :])
  except ValueError:
    raise ConfigError(f"serving_latency.py printed no JSON: {stdout[-300:]!r}") from None
  result["command"] = " ".join(args[1:])
  return result
