"""Distribution strategies: one device, all local devices, or several workers (TF_CONFIG)."""

import json
import os

import tensorflow as tf

from copart_tf.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(num_devices):
  """Splits the physical CPU into `num_devices` logical devices (for testing mirrored on CPU).

  Must run before TensorFlow initialises its devices (before any op runs).
  """
  if num_devices <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )
  except RuntimeError as error:
    raise ConfigError(
      f"--num_cpu_devices={num_devices}: TensorFlow was initialised before the CPU could be split"
      f" ({error})"
    ) from None


def make_strategy(name, num_cpu_devices=1):
  """Returns the `tf.distribute` strategy for `--strategy`.

  Args:
    name: "default" (one device), "mirrored" (all local GPUs, or `num_cpu_devices` logical CPUs
      when there is no GPU) or "multi_worker" (MultiWorkerMirroredStrategy from TF_CONFIG).
    num_cpu_devices: logical CPU devices to create (mirrored on CPU, mostly for tests).
  """
  if name not in STRATEGIES:
    raise ConfigError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
  if name == "multi_worker":
    config = os.environ.get("TF_CONFIG")
    if not config:
      raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable")
    try:
      json.loads(config)
    except ValueError:
      raise ConfigError("TF_CONFIG is not valid JSON") from None
    split_cpu(num_cpu_devices)
    return tf.distribute.MultiWorkerMirroredStrategy()
  split_cpu(num_cpu_devices)
  if name == "default":
    return tf.distribute.get_strategy()
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return tf.distribute.MirroredStrategy([d.name for d in gpus])
  cpus = tf.config.list_logical_devices("CPU")
  return tf.distribute.MirroredStrategy([d.name for d in cpus])


def is_chief(strategy):
  """True on the worker that writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (
    task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
  )
