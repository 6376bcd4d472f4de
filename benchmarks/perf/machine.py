"""Facts about the machine and the process: CPU, threads, library versions, memory."""

import datetime
import os
import platform
import resource

_FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def _cpuinfo():
  try:
    with open("/proc/cpuinfo") as f:
      return f.read()
  except OSError:
    return ""


def cpu_model():
  """The first ``model name`` of /proc/cpuinfo (else `platform.processor()`)."""
  for line in _cpuinfo().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def cpu_flags():
  """Which of the vector-instruction flags that matter for TF kernels the CPU reports."""
  for line in _cpuinfo().splitlines():
    if line.startswith("flags"):
      flags = set(line.split(":", 1)[1].split())
      return {name: name in flags for name in _FLAGS_OF_INTEREST}
  return {}


def usable_cores():
  """CPUs this process may run on (affinity mask), falling back to `os.cpu_count()`."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count()


def machine_facts():
  """CPU, cores, library versions, oneDNN setting, TF thread pools, load and date (JSON-able)."""
  import keras
  import numpy as np
  import tensorflow as tf

  try:
    load = [round(x, 2) for x in os.getloadavg()]
  except OSError:
    load = None
  return {
    "cpu_model": cpu_model(),
    "cpu_flags": cpu_flags(),
    "cpu_count": os.cpu_count(),
    "usable_cores": usable_cores(),
    "tensorflow": tf.__version__,
    "keras": keras.__version__,
    "numpy": np.__version__,
    "python": platform.python_version(),
    "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    "load_average": load,
    "nice": os.nice(0),
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "hostname": platform.node(),
  }


def load_average_1m():
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return None


# ------------------------------------------------------------------------------ memory


def _status_kb(field):
  """A ``kB`` field of /proc/self/status (VmHWM, VmRSS), or None."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except (OSError, ValueError, IndexError):
    pass
  return None


def current_rss_mb():
  kb = _status_kb("VmRSS")
  return None if kb is None else round(kb / 1024.0, 1)


def peak_rss_mb():
  """Peak resident memory since the last `reset_peak_rss` (VmHWM), else since the process start."""
  kb = _status_kb("VmHWM")
  if kb is None:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
  return round(kb / 1024.0, 1)


def process_peak_rss_mb():
  """Peak resident memory over the whole process life (getrusage ru_maxrss; never reset)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def reset_peak_rss():
  """Resets VmHWM to the current RSS (Linux >= 4.0: ``5`` > /proc/self/clear_refs).

  Returns:
    True when the reset worked, so that `peak_rss_mb` then measures one phase of the benchmark.
  """
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


class PhaseMemory:
  """Peak RSS of one phase: ``with PhaseMemory() as mem: ...`` then ``mem.result()``."""

  def __enter__(self):
    self.reset = reset_peak_rss()
    self.start_mb = current_rss_mb()
    return self

  def __exit__(self, *exc):
    self.peak_mb = peak_rss_mb() if self.reset else None
    self.end_mb = current_rss_mb()
    return False

  def result(self):
    """dict: peak_rss_mb (None if VmHWM could not be reset), rss at start/end, in MiB."""
    return {
      "peak_rss_mb": self.peak_mb,
      "rss_at_start_mb": self.start_mb,
      "rss_at_end_mb": self.end_mb,
    }
