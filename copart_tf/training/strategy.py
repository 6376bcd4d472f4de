"""Distribution strategies: one device, all local devices, or several workers (TF_CONFIG).

Before TensorFlow's MultiWorkerMirroredStrategy starts, `wait_for_cluster` checks that every other
worker named in TF_CONFIG is up, for at most `--cluster_timeout` seconds: TensorFlow itself waits
for a missing worker forever, inside C++ where neither Ctrl-C nor SIGTERM reaches Python.
"""

import errno
import json
import os
import socket
import time

import tensorflow as tf
from absl import logging

from copart_tf.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")
# The tasks of a TF_CONFIG cluster that train under MultiWorkerMirroredStrategy.
TRAINING_JOBS = ("chief", "worker")
DEFAULT_CLUSTER_TIMEOUT_S = 300.0


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


def parse_tf_config(text):
  """Reads TF_CONFIG: this task's address and the other training tasks' addresses.

  Args:
    text: the value of the TF_CONFIG environment variable.

  Returns:
    `(own, peers)`: `own` is `(name, address)` of this task, `peers` a list of `(name, address)`
    of the other chief/worker tasks, names like ``"worker 1"``.

  Raises:
    ConfigError: TF_CONFIG is not JSON or does not name this task in its cluster.
  """
  try:
    config = json.loads(text)
  except ValueError:
    raise ConfigError("TF_CONFIG is not valid JSON") from None
  cluster = config.get("cluster") if isinstance(config, dict) else None
  task = config.get("task") if isinstance(config, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise ConfigError(
      'TF_CONFIG needs "cluster" and "task", e.g. {"cluster": {"worker": ["127.0.0.1:12345", '
      '"127.0.0.1:12346"]}, "task": {"type": "worker", "index": 0}}'
    )
  task_type, index = task.get("type"), task.get("index", 0)
  addresses = cluster.get(task_type)
  if task_type not in TRAINING_JOBS or not isinstance(addresses, list):
    raise ConfigError(
      f"TF_CONFIG task type {task_type!r}: --strategy=multi_worker runs chief/worker tasks listed "
      f"in the cluster ({', '.join(sorted(cluster)) or 'empty'})"
    )
  if not isinstance(index, int) or not 0 <= index < len(addresses):
    raise ConfigError(
      f"TF_CONFIG task index {index!r}: the cluster has {len(addresses)} {task_type} task(s)"
    )
  own = (f"{task_type} {index}", addresses[index])
  peers = [
    (f"{job} {i}", address)
    for job in TRAINING_JOBS
    for i, address in enumerate(cluster.get(job) or [])
    if (job, i) != (task_type, index)
  ]
  return own, peers


def _split_address(address):
  host, _, port = str(address).rpartition(":")
  try:
    return host.strip("[]") or "127.0.0.1", int(port)
  except ValueError:
    raise ConfigError(f"TF_CONFIG address {address!r} is not host:port") from None


def _listen(address):
  """Listens on this task's own address until TensorFlow's server takes the port over."""
  host, port = _split_address(address)
  listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
  listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    listener.bind((host, port))
  except OSError as error:
    listener.close()
    if error.errno == errno.EADDRINUSE:
      raise ConfigError(
        f"TF_CONFIG: this task's address {address} is in use (another worker or an earlier run "
        "still alive?)"
      ) from None
    # Not an address of this machine (e.g. behind NAT): peers reach us once TF's server is up.
    logging.info("cannot listen on %s before the cluster starts (%s)", address, error.strerror)
    return None
  listener.listen(16)
  listener.setblocking(False)
  return listener


def _drain(listener):
  """Accepts and closes the peers' probe connections (so the backlog never fills up)."""
  while listener is not None:
    try:
      connection, _ = listener.accept()
    except OSError:  # BlockingIOError: nobody waiting
      return
    connection.close()


def _reachable(address, timeout_s=1.0):
  try:
    with socket.create_connection(_split_address(address), timeout=timeout_s):
      return True
  except OSError:
    return False


def wait_for_cluster(tf_config, timeout_s, poll_s=0.5):
  """Waits until every other training task in TF_CONFIG accepts connections.

  This task listens on its own address meanwhile, so that the workers find each other whatever
  order they start in; TensorFlow's server takes the port over right after.

  Args:
    tf_config: the TF_CONFIG JSON text.
    timeout_s: how long to wait (`--cluster_timeout`).
    poll_s: seconds between two rounds of connection attempts.

  Raises:
    ConfigError: a task did not come up in time (names its address), or TF_CONFIG is malformed.
  """
  own, peers = parse_tf_config(tf_config)
  pending = dict(peers)
  if not pending:
    return
  listener = _listen(own[1])
  try:
    logging.info(
      "%s (%s): waiting up to %.0f s (--cluster_timeout) for %s",
      own[0],
      own[1],
      timeout_s,
      ", ".join(f"{name} at {address}" for name, address in peers),
    )
    deadline = time.monotonic() + timeout_s
    while True:
      _drain(listener)
      for name, address in list(pending.items()):
        if _reachable(address):
          del pending[name]
      if not pending:
        return
      if time.monotonic() >= deadline:
        missing = ", ".join(f"{name} at {address}" for name, address in pending.items())
        raise ConfigError(
          f"--cluster_timeout={timeout_s:g}: {missing} did not come up within {timeout_s:g} s "
          f"(start {'it' if len(pending) == 1 else 'them'} with the same TF_CONFIG cluster and "
          "its own task index, or raise --cluster_timeout)"
        )
      time.sleep(poll_s)
  finally:
    if listener is not None:
      listener.close()


def make_strategy(name, num_cpu_devices=1, cluster_timeout_s=DEFAULT_CLUSTER_TIMEOUT_S):
  """Returns the `tf.distribute` strategy for `--strategy`.

  Args:
    name: "default" (one device), "mirrored" (all local GPUs, or `num_cpu_devices` logical CPUs
      when there is no GPU) or "multi_worker" (MultiWorkerMirroredStrategy from TF_CONFIG).
    num_cpu_devices: logical CPU devices to create (mirrored on CPU, mostly for tests).
    cluster_timeout_s: multi_worker only: how long to wait for the other workers to come up.

  Raises:
    ConfigError: an unknown strategy, a missing or malformed TF_CONFIG, a worker that did not
      come up within `cluster_timeout_s`.
  """
  if name not in STRATEGIES:
    raise ConfigError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
  if name == "multi_worker":
    config = os.environ.get("TF_CONFIG")
    if not config:
      raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable")
    wait_for_cluster(config, cluster_timeout_s)
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
