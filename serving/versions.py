"""SavedModel versions: one loaded version (`Servable`) and the version manager.

`ModelManager` serves the newest numbered version under a base path, polls for new versions,
loads and warms them up before they go live, keeps the old version when a new one fails to load,
and unloads a version whose directory was removed.
"""

import os
import threading
import time

from absl import logging

from serving import validation

INIT_OP_SIGNATURE = "__saved_model_init_op"
# Version states of `GetModelStatus` (tensorflow_serving/apis/get_model_status.proto).
_STATE_LOADING = 20
_STATE_AVAILABLE = 30
_STATE_END = 50


class Servable:
  """One loaded SavedModel version: its signature defs and callable signatures.

  Args:
    name: model name.
    version: integer version.
    path: the version directory.
  """

  def __init__(self, name, version, path):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    self.name = name
    self.version = int(version)
    self.path = path
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
      proto = saved_model_pb2.SavedModel.FromString(f.read())
    serve = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
    if not serve:
      raise ValueError(f"{path}: no MetaGraph with the 'serve' tag")
    self.signature_defs = dict(serve[0].signature_def)
    self._loaded = tf.saved_model.load(path, tags=["serve"])
    self.functions = {
      key: self._loaded.signatures[key]
      for key in self.signature_defs
      if key != INIT_OP_SIGNATURE and key in self._loaded.signatures
    }


class ModelManager:
  """Serves the newest version under a base path and switches to new versions as they appear.

  Args:
    name: the model name requests must use.
    base_path: directory of numbered SavedModel versions.
    poll_seconds: seconds between polls of `base_path` (<= 0: load once, never poll).
    warmup: replay ``assets.extra/tf_serving_warmup_requests`` before a version goes live.
    predict_fn: callable (servable, request) -> response used for the warm-up.
  """

  def __init__(self, name, base_path, poll_seconds=2.0, warmup=True, predict_fn=None):
    self.name = name
    self.base_path = os.fspath(base_path)
    self.poll_seconds = float(poll_seconds)
    self.warmup = warmup
    self._predict_fn = predict_fn
    self._servable = None
    self._states = {}  # version -> (state, error message or "")
    self._failed = {}  # version -> mtime of the directory that failed to load
    self._lock = threading.Lock()
    self._poll_lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None
    self._warned_empty = False

  @property
  def servable(self):
    """The live `Servable` (or None)."""
    return self._servable

  def states(self):
    with self._lock:
      return dict(self._states)

  def _set_state(self, version, state, error=""):
    with self._lock:
      self._states[version] = (state, error)

  def poll(self):
    """Loads the newest version if it is not the live one. Returns the live version or None."""
    from copart_tf.export import saved_model as saved_model_lib

    with self._poll_lock:
      versions = saved_model_lib.list_versions(self.base_path)
      current = self._servable
      if not versions:
        if not self._warned_empty:
          logging.warning("no versions of model %r under %s yet", self.name, self.base_path)
          self._warned_empty = True
        if current is not None and not os.path.isdir(current.path):
          logging.info("version %d of %r was removed: unloaded", current.version, self.name)
          self._servable = None
          self._set_state(current.version, _STATE_END)
        return None if self._servable is None else self._servable.version
      self._warned_empty = False
      for version in reversed(versions):
        if current is not None and version == current.version:
          return version
        path = os.path.join(self.base_path, str(version))
        try:
          mtime = os.stat(path).st_mtime
        except OSError:
          continue
        if self._failed.get(version) == mtime:
          continue  # same broken directory as last time: try an older version
        if self._load(version, path, mtime):
          return version
      return None if current is None else current.version

  def _load(self, version, path, mtime):
    self._set_state(version, _STATE_LOADING)
    started = time.time()
    try:
      servable = Servable(self.name, version, path)
      if self.warmup and self._predict_fn is not None:
        self._run_warmup(servable)
    except Exception as error:  # any load failure keeps the old version live
      message = validation.first_line(error)
      logging.error("cannot load version %d of %r from %s: %s", version, self.name, path, message)
      self._failed[version] = mtime
      self._set_state(version, _STATE_END, message)
      return False
    old = self._servable
    self._servable = servable  # atomic swap: in-flight requests keep their reference
    self._set_state(version, _STATE_AVAILABLE)
    if old is not None:
      self._set_state(old.version, _STATE_END)
    logging.info(
      "serving version %d of %r from %s (loaded in %.1f s)",
      version,
      self.name,
      path,
      time.time() - started,
    )
    return True

  def _run_warmup(self, servable):
    from copart_tf.export import saved_model as saved_model_lib

    path = os.path.join(servable.path, saved_model_lib.ASSETS_EXTRA, saved_model_lib.WARMUP_FILE)
    requests = saved_model_lib.read_warmup_file(path)
    for request in requests:
      self._predict_fn(servable, request)
    if requests:
      logging.info("version %d: replayed %d warm-up requests", servable.version, len(requests))

  def start(self):
    """Loads what is there now, then polls in a daemon thread."""
    self.poll()
    if self.poll_seconds > 0:
      self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
      self._thread.start()

  def _poll_loop(self):
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception as error:  # the poller must survive anything
        logging.error("version poll failed: %s", validation.first_line(error))

  def stop(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=30)
