"""`run`: builds the model once and runs the requested phases on it (the benchmark's JSON).

The orchestration lives here, apart from `harness` (model construction, FLOPs, utilisation): the
phase modules `train`, `infer` and `serve` import `harness`, and only this module imports them.
"""

import shutil
import tempfile
import time

import keras
from absl import logging

from benchmarks.perf import flops as flops_lib
from benchmarks.perf import harness, machine, reference
from benchmarks.perf import infer as infer_lib
from benchmarks.perf import matmul as matmul_lib
from benchmarks.perf import serve as serve_lib
from benchmarks.perf import train as train_lib


def run(config, log=None):
  """Runs the requested phases and returns the JSON-able result.

  Args:
    config: `BenchmarkConfig` (validated here).
    log: callable receiving progress messages (one string each); default absl logging.info.

  Returns:
    dict with config, machine, model (params, FLOPs), matmul, the phases' sections (train,
    infer, serve), memory, reference and comparison. See benchmarks/README.md.
  """
  log = log or logging.info
  config.validate()
  phases = config.phases()
  result = {
    "benchmark": "copart_tf.benchmark",
    "schema_version": 1,
    "config": config.to_dict(),
    "machine": machine.machine_facts(),
  }
  started = time.perf_counter()
  tmp = tempfile.mkdtemp(prefix="copart_benchmark_")
  try:
    with harness.precision_policy(config.mixed_precision):
      log(f"building the {config.preset} model ({config.mixed_precision})")
      model = harness.build_model(config, with_optimizer="train" in phases)
      result["model"] = {
        "preset": config.preset,
        "params": flops_lib.model_params(model),
        "dtype_policy": keras.mixed_precision.global_policy().name,
      }
      log("counting FLOPs")
      result["model"]["flops"] = harness.measure_flops(model, config)

      if config.peak_gflops > 0:
        result["matmul"] = {"gflops": config.peak_gflops, "source": "--peak_gflops"}
      elif config.matmul_size > 0:
        log(f"measuring the float32 matmul rate ({config.matmul_size}^2)")
        result["matmul"] = matmul_lib.matmul_gflops(config.matmul_size)
        result["matmul"]["source"] = "measured (benchmarks/perf/matmul.py)"
      else:
        result["matmul"] = {"gflops": None, "source": "skipped (--matmul_size=0)"}
      peak = result["matmul"]["gflops"]

      export_base = None
      if "train" in phases:
        log(f"train: {config.warmup} + {config.steps} steps per measurement")
        result["train"] = train_lib.measure_train(model, config, result["model"]["flops"], peak)
      if "infer" in phases:
        log("infer: export, load, time the SavedModel and the Keras model")
        export_base = f"{tmp}/export"
        result["infer"] = infer_lib.measure_infer(
          model, config, export_base, result["model"]["flops"], peak
        )
      if "serve" in phases:
        if export_base is None:
          from copart_tf.export import saved_model as export_lib

          export_base = f"{tmp}/export"
          export_lib.export(model, export_base)
        log("serve: local gRPC server, sequential then concurrent Predict calls")
        result["serve"] = serve_lib.measure_serve(export_base, config)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  result["memory"] = {
    "process_peak_rss_mb": machine.process_peak_rss_mb(),
    "method": (
      "process_peak_rss_mb = getrusage(RUSAGE_SELF).ru_maxrss over the whole run; each phase's "
      "memory.peak_rss_mb = /proc/self/status VmHWM after resetting it (/proc/self/clear_refs) "
      "at the start of the phase"
    ),
  }
  result["reference"] = dict(reference.REFERENCE, targets=reference.TARGETS)
  result["comparison"] = reference.compare(result, config)
  result["load_average_1m_at_end"] = machine.load_average_1m()
  result["wall_seconds"] = round(time.perf_counter() - started, 1)
  return result
