"""Timing helpers: call a function repeatedly, summarise the samples."""

import time

import numpy as np


def summarize(seconds):
  """Summary of timing samples, in milliseconds.

  Args:
    seconds: list of durations in seconds (one per timed call).

  Returns:
    dict: n, median, p10, p90, mean, min, max (milliseconds, 3 decimals); all None when empty.
  """
  values = np.asarray(seconds, dtype=np.float64) * 1000.0
  if values.size == 0:
    return {k: None for k in ("n", "median", "p10", "p90", "mean", "min", "max")}

  def r(x):
    return round(float(x), 3)

  return {
    "n": int(values.size),
    "median": r(np.median(values)),
    "p10": r(np.percentile(values, 10)),
    "p90": r(np.percentile(values, 90)),
    "mean": r(values.mean()),
    "min": r(values.min()),
    "max": r(values.max()),
  }


def time_calls(fn, steps, warmup):
  """Calls `fn()` `warmup` times untimed, then `steps` times timed.

  `fn` must block until its work is done (e.g. end with `.numpy()` on a result), since TensorFlow
  may return before the computation has finished.

  Args:
    fn: callable without arguments.
    steps: timed calls (>= 1).
    warmup: untimed calls before them (the first one includes tracing / XLA compilation).

  Returns:
    dict: the `summarize` fields in ms, plus ``first_call_s`` (duration of the very first call,
    i.e. tracing + compilation + one run) and ``samples_ms``.
  """
  first = None
  for _ in range(warmup):
    start = time.perf_counter()
    fn()
    if first is None:
      first = time.perf_counter() - start
  samples = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - start)
  if first is None:
    first = samples[0]
  out = summarize(samples)
  out["first_call_s"] = round(first, 3)
  out["samples_ms"] = [round(s * 1000.0, 3) for s in samples]
  return out


def per_second(count, milliseconds):
  """`count` items per `milliseconds` -> items per second (None if the time is missing)."""
  if not milliseconds:
    return None
  return round(count * 1000.0 / milliseconds, 4)
