"""tf.data input pipelines: training pairs and evaluation frames (docs/ARCHITECTURE.md).

Training pairs (`make_pair_dataset`)
------------------------------------
Example ``g`` (the global index: step ``s`` holds examples ``s*B .. s*B+B-1``) is a function of
``(seed, g)`` only, so the dataset built with ``start_step=s`` yields exactly the batches the
uninterrupted run yields from step ``s`` on, and the step counter saved in a checkpoint is the
whole data RNG state. All draws use stateless RNGs:

- which video: epoch-balanced, ``epoch = g // U``, the ``g % U``-th element of a permutation of
  the U sampling units seeded by ``(seed, epoch)`` (`tf.random.experimental.index_shuffle`), so
  every unit is drawn exactly once per U examples. A unit is a video, or with ``id_sampling`` an
  identity (the text before the first ``#``), from which a video is then drawn uniformly;
- which frames: two independent uniform frames of that video (may be equal), source = the earlier
  one (FOMM's ``np.sort(np.random.choice(T, 2, replace=True))``);
- the augmentation draw (`copart_tf.data.augment.augment_pair`).

Frame folders and strips are read and decoded with pure TF ops (`tf.io.read_file`,
`tf.io.decode_image`), so the parallel map runs without the GIL; video files (mp4/gif/...) go
through `tf.numpy_function` and a bounded pool of ffmpeg readers (`video_io.read_video_frames`).
Frame file names are not stored one by one when a folder follows a numbered pattern
(``0000000.png, 0000001.png, ...``): the name is rebuilt from the index, so the graph stays small
for datasets with millions of frames.

Odd but readable data is used and reported, one warning per video and kind of problem, naming
the files: a frame of another size than the video's first frame (every frame is resized to S x S
on its own, so that frame is scaled differently), a grey, grey + alpha or RGBA frame (converted to
RGB, alpha dropped). A video with one frame cannot give a pair: it is skipped with a warning (at
scan time, or for video files whose frames are counted only when read, when it is first drawn:
the example is then redrawn as for a bad frame, in both `on_bad_frame` modes).

Bad frames: every example is produced by a tiny nested dataset that tries the drawn pair with
`ignore_errors` and, if decoding failed, calls a Python diagnosis that names the file:

- ``on_bad_frame="fail"`` (default): the diagnosis raises. TensorFlow surfaces it as a
  `tf.errors.OpError` whose message contains ``DataError: <file>: <reason>``; wrap the consumer in
  `translate_data_errors()` to get a `copart_tf.errors.DataError`.
- ``on_bad_frame="skip"``: the file is logged once (warning) and the example is redrawn from
  ``(seed, g, attempt)``: same distribution, deterministic. After `MAX_ATTEMPTS` failed draws for
  one example it raises (the data is mostly corrupt) instead of looping.
"""

import atexit
import contextlib
import os
import re
import threading
import time

import numpy as np
import tensorflow as tf

from copart_tf.data import augment as augment_lib
from copart_tf.data import layout, video_io
from copart_tf.errors import ConfigError, DataError

MAX_ATTEMPTS = 16

# Branches of the frame loader.
_FILES, _STRIP, _PYTHON = 0, 1, 2
# Ways of naming a frame file of a frame folder.
_NAMED_BY_PATTERN, _NAMED_BY_LIST = 0, 1
_FRAME_NAME = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")
_DATA_ERROR = re.compile(r"DataError: ([^\n]*)")
# The dataset functions use no Python control flow on tensors: skip AutoGraph (faster tracing).
_plain = tf.autograph.experimental.do_not_convert


@contextlib.contextmanager
def translate_data_errors():
  """Turns tf.data errors raised for bad input files into `DataError` (one clear line).

  Usage::

    with translate_data_errors():
      model.fit(dataset, ...)
  """
  try:
    yield
  except tf.errors.OpError as e:
    error = data_error_from(e)
    if error is None:
      raise
    raise error from e


def data_error_from(error):
  """The `DataError` carried by a TF op error from this pipeline, or None."""
  match = _DATA_ERROR.search(getattr(error, "message", None) or str(error))
  return DataError(match.group(1).strip()) if match else None


def _frame_pattern(files):
  """(prefix, width, start, ext) if the sorted names are prefix + consecutive zero-padded ints."""
  names = [os.path.basename(f) for f in files]
  first = _FRAME_NAME.match(names[0])
  if first is None:
    return None
  prefix, digits, ext = first.groups()
  width, start = len(digits), int(digits)
  for k, name in enumerate(names):
    m = _FRAME_NAME.match(name)
    if m is None:
      return None
    p, d, e = m.groups()
    if p != prefix or e != ext or len(d) != width or int(d) != start + k:
      return None
  return prefix, width, start, ext


class _Tables:
  """Per-video lookup tables (NumPy) describing where each frame lives."""

  def __init__(self, entries, id_sampling):
    n = len(entries)
    self.num_videos = n
    self.branch = np.zeros(n, np.int32)
    self.naming = np.zeros(n, np.int32)
    self.path = []
    self.num_frames = np.zeros(n, np.int64)
    self.prefix, self.ext = [], []
    self.width = np.zeros(n, np.int32)
    self.start = np.zeros(n, np.int64)
    self.name_offset = np.zeros(n, np.int64)
    # (height, width) every frame should have (the first frame's), 0 = not known.
    self.frame_height = np.zeros(n, np.int32)
    self.frame_width = np.zeros(n, np.int32)
    names = []
    for v, e in enumerate(entries):
      pattern = None
      if e.kind == "frames":
        self.branch[v] = _FILES
        self.path.append(e.path.rstrip(os.sep) + os.sep)
        pattern = _frame_pattern(e.frame_files)
        if pattern is None:
          self.naming[v] = _NAMED_BY_LIST
          self.name_offset[v] = len(names)
          names.extend(os.path.basename(f) for f in e.frame_files)
      else:
        self.branch[v] = _STRIP if e.kind == "strip" else _PYTHON
        self.path.append(e.path)
      self.num_frames[v] = e.num_frames or 0
      if e.frame_size is not None:
        self.frame_height[v], self.frame_width[v] = e.frame_size
      prefix, width, start, ext = pattern or ("", 0, 0, "")
      self.prefix.append(prefix)
      self.ext.append(ext)
      self.width[v] = width
      self.start[v] = start
    self.names = names or [""]
    self.branches = sorted(set(self.branch.tolist()))
    # Sampling units: videos, or identities with their member videos.
    if id_sampling:
      identities = sorted({e.identity for e in entries})
      members = {i: [] for i in identities}
      for v, e in enumerate(entries):
        members[e.identity].append(v)
      counts = [len(members[i]) for i in identities]
      self.unit_members = np.asarray([v for i in identities for v in members[i]], np.int64)
      self.unit_count = np.asarray(counts, np.int64)
      self.unit_offset = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    else:
      self.unit_members = np.arange(n, dtype=np.int64)
      self.unit_count = np.ones(n, np.int64)
      self.unit_offset = np.arange(n, dtype=np.int64)
    self.num_units = len(self.unit_count)


def _validate_config(image_size, global_batch_size, num_replicas, start_step, seed, on_bad_frame):
  layout.check_on_bad_frame(on_bad_frame)
  if not isinstance(image_size, int | np.integer) or image_size < 1:
    raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
  if not isinstance(num_replicas, int | np.integer) or num_replicas < 1:
    raise ConfigError(f"num_replicas must be a positive integer, got {num_replicas!r}")
  if not isinstance(global_batch_size, int | np.integer) or global_batch_size < 1:
    raise ConfigError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
  if global_batch_size % num_replicas:
    raise ConfigError(
      f"global_batch_size={global_batch_size} is not divisible by the number of replicas "
      f"({num_replicas}): the global batch is the per-replica batch x replicas"
    )
  if not isinstance(start_step, int | np.integer) or start_step < 0:
    raise ConfigError(f"start_step must be a non-negative integer, got {start_step!r}")
  if not isinstance(seed, int | np.integer):
    raise ConfigError(f"seed must be an integer, got {seed!r}")


class _PythonCalls:
  """Tracks the pipeline's Python calls so the process can exit cleanly.

  A `tf.numpy_function` still running when the interpreter finalizes can never get the GIL back:
  its TF thread dies and the iterator's destructor then waits for it forever (measured: a
  script reading mp4s hung at exit every time). At exit (`atexit`, before finalization) `drain`
  makes every later call return a dummy at once, waits until no call has been running for a
  moment (the idle pipeline's buffers are full by then, so no new call starts) and closes the
  ffmpeg readers.
  """

  QUIET_SECONDS = 0.3
  TIMEOUT_SECONDS = 10.0

  def __init__(self):
    self._lock = threading.Lock()
    self._running = 0
    self._last = 0.0
    self.closing = False

  @contextlib.contextmanager
  def call(self):
    with self._lock:
      self._running += 1
      self._last = time.monotonic()
    try:
      yield
    finally:
      with self._lock:
        self._running -= 1
        self._last = time.monotonic()

  def drain(self):
    self.closing = True
    deadline = time.monotonic() + self.TIMEOUT_SECONDS
    while time.monotonic() < deadline:
      with self._lock:
        idle = self._running == 0 and time.monotonic() - self._last > self.QUIET_SECONDS
      if idle:
        break
      time.sleep(0.05)
    video_io.close_video_readers()


_PY_CALLS = _PythonCalls()
atexit.register(_PY_CALLS.drain)


def _dummy_pair(dtype):
  dummy = np.zeros((1, 1, 3), dtype)
  return dummy, dummy, np.bool_(False)


# Video files found to have fewer than 2 frames when read (skipped, not errors).
_TOO_SHORT = set()
_TOO_SHORT_LOCK = threading.Lock()


def _py_read_video_pair(path, fractions):
  """numpy_function body: two frames of a video file, or dummies and ok=False."""
  with _PY_CALLS.call():
    if _PY_CALLS.closing:
      return _dummy_pair(np.uint8)
    path = path.decode()
    try:
      num_frames = video_io.video_num_frames(path)
      if num_frames < 2:
        with _TOO_SHORT_LOCK:
          _TOO_SHORT.add(path)
        layout.warn_too_few_frames(path, num_frames, 2)
        return _dummy_pair(np.uint8)
      a, b = video_io.read_video_frames(path, fractions.tolist())
    except DataError:
      return _dummy_pair(np.uint8)
    return a, b, np.bool_(True)


_CHANNEL_KINDS = {1: "grey", 2: "grey + alpha (alpha dropped)", 4: "RGBA (alpha dropped)"}


def _py_warn_frames(video, path_a, path_b, shape_a, shape_b, expected, size):
  """numpy_function body run for a pair with an odd frame: warns once per video and problem."""
  with _PY_CALLS.call():
    video = video.decode().rstrip(os.sep)
    paths = dict.fromkeys((path_a.decode(), path_b.decode()))
    shapes = [shape_a.tolist(), shape_b.tolist()]
    height, width = expected.tolist()
    reference = "its first frame"
    if not height:  # size of the first frame unknown: compare the two frames with each other
      (height, width, _), reference = shapes[0], f"frame {path_a.decode()}"
    for path, (h, w, c) in zip(paths, shapes, strict=False):
      if c != 3:
        layout.warn_once(
          (video, "channels"),
          f"video {video}: frame {path} is {_CHANNEL_KINDS.get(c, f'{c}-channel')}, not RGB; "
          "converted to RGB (one warning per video)",
        )
      if (h, w) != (height, width):
        layout.warn_once(
          (video, "size"),
          f"video {video}: frame {path} is {h}x{w} pixels but {reference} is {height}x{width}; "
          f"each frame is resized to {size}x{size} on its own, so this one is scaled differently "
          "from the rest of its video (one warning per video)",
        )
    return np.bool_(True)


def _make_diagnose(on_bad_frame):
  """numpy_function body run after a failed read: names the bad file, then raises or skips."""

  def diagnose(branch, path_a, path_b, fractions):
    with _PY_CALLS.call():
      if _PY_CALLS.closing:
        return _dummy_pair(np.float32)
      return _diagnose(branch, path_a.decode(), path_b.decode(), fractions)

  def _diagnose(branch, path_a, path_b, fractions):
    message = None
    if branch == _PYTHON:
      with _TOO_SHORT_LOCK:
        too_short = path_a in _TOO_SHORT
      if too_short:  # warned when read; redraw in both modes
        return _dummy_pair(np.float32)
      try:
        video_io.read_video_frames(path_a, fractions.tolist())
        message = f"cannot read video {path_a} (it worked when retried)"
      except DataError as e:
        message = str(e)
      bad_file = path_a
    else:
      bad_file = path_a
      for p in dict.fromkeys((path_a, path_b)):
        reason = video_io.check_image_file(p)
        if reason is not None:
          message, bad_file = f"cannot decode frame {p}: {reason}", p
          break
      if message is None:
        files = path_a if path_a == path_b else f"{path_a} or {path_b}"
        message = f"TensorFlow cannot decode frame {files} (Pillow can)"
    if on_bad_frame == "fail":
      raise RuntimeError(
        f"DataError: {message} (on_bad_frame='skip' substitutes bad frames instead)"
      )
    layout.warn_once(bad_file, f"on_bad_frame=skip: {message}; substituting another frame")
    return _dummy_pair(np.float32)

  return diagnose


def _all_bad(index):
  if _PY_CALLS.closing:
    return _dummy_pair(np.float32)
  raise RuntimeError(
    f"DataError: gave up on example {int(index)}: {MAX_ATTEMPTS} pairs drawn in a row were "
    "unreadable or from videos of one frame (see the warnings naming the files); the data looks "
    "mostly corrupt"
  )


def make_pair_dataset(
  data_dir,
  split,
  image_size,
  global_batch_size,
  seed,
  start_step=0,
  augment=True,
  id_sampling=False,
  on_bad_frame="fail",
  num_replicas=1,
  rotation_degrees=augment_lib.ROTATION_DEGREES,
):
  """Infinite dataset of (source, target) frame pairs from the videos of one split.

  Args:
    data_dir: dataset root in the FOMM layout (see `copart_tf.data.layout`).
    split: ``"train"`` or ``"test"``.
    image_size: model input side S; frames are resized to S x S (area / bilinear).
    global_batch_size: B, examples per step over all replicas (per-replica batch x replicas).
    seed: integer; with `start_step` it fixes every example.
    start_step: first step to produce (resume): the result equals batches `start_step`, ... of
      the dataset made with ``start_step=0``.
    augment: apply `augment.augment_pair` (time flip, rotation, colour jitter).
    id_sampling: draw identities (name before the first ``#``) uniformly instead of videos.
    on_bad_frame: ``"fail"`` or ``"skip"`` (see the module docstring).
    num_replicas: replicas in sync; `global_batch_size` must be divisible by it.
    rotation_degrees: maximum rotation of `augment` (0: none, e.g. for a level horizon).

  Returns:
    `tf.data.Dataset` of dicts ``{"source": float32 [B, S, S, 3], "target": float32 [B, S, S, 3]}``
    with values in [0, 1]; infinite, batched with ``drop_remainder=True``, deterministic order.

  Raises:
    ConfigError: bad sizes, replicas, seed or `on_bad_frame`.
    DataError: missing / empty split or bad videos found at scan time.
  """
  _validate_config(image_size, global_batch_size, num_replicas, start_step, seed, on_bad_frame)
  size = int(image_size)
  batch = int(global_batch_size)
  entries = layout.scan_split(
    data_dir, split, on_bad_frame=on_bad_frame, min_frames=2, frame_sizes=True
  )
  t = _Tables(entries, id_sampling)
  # In "fail" mode a bad frame raises at the first attempt; redraws then only skip video files
  # that turn out to have one frame.
  attempts = MAX_ATTEMPTS

  branch_t = tf.constant(t.branch)
  naming_t = tf.constant(t.naming)
  path_t = tf.constant(t.path)
  frames_t = tf.constant(t.num_frames)
  prefix_t = tf.constant(t.prefix)
  ext_t = tf.constant(t.ext)
  width_t = tf.constant(t.width)
  start_t = tf.constant(t.start)
  offset_t = tf.constant(t.name_offset)
  frame_hw_t = tf.constant(np.stack([t.frame_height, t.frame_width], axis=1))
  names_t = tf.constant(t.names)
  num_names = tf.constant(len(t.names), tf.int64)
  unit_members_t = tf.constant(t.unit_members)
  unit_count_t = tf.constant(t.unit_count)
  unit_offset_t = tf.constant(t.unit_offset)
  num_units = tf.constant(t.num_units, tf.int64)
  base_seed = tf.constant([int(seed), 0x636F70], tf.int64)  # 0x636F70 = "cop"
  perm_seed = tf.random.experimental.stateless_fold_in(base_seed, 1)
  example_seed = tf.random.experimental.stateless_fold_in(base_seed, 2)

  def pick(count, u):
    """floor(u * count) clipped to [0, count - 1]; u in [0, 1) float64."""
    k = tf.cast(tf.floor(u * tf.cast(count, tf.float64)), tf.int64)
    return tf.clip_by_value(k, 0, tf.maximum(count - 1, 0))

  def sample(index, attempt):
    """The drawn pair of candidate `attempt` of example `index` (a dict of tensors)."""
    seed_ex = tf.random.experimental.stateless_fold_in(example_seed, index)
    seed_c = tf.random.experimental.stateless_fold_in(seed_ex, attempt + 1)
    r = tf.random.stateless_uniform([4], seed=seed_c, dtype=tf.float64)

    def balanced():
      epoch_seed = tf.random.experimental.stateless_fold_in(perm_seed, index // num_units)
      return tf.random.experimental.index_shuffle(index % num_units, epoch_seed, num_units - 1)

    # (tf.where rather than tf.cond: both sides are cheap and tracing a cond is not.)
    unit = tf.where(tf.equal(attempt, 0), balanced(), pick(num_units, r[0]))
    member = pick(unit_count_t[unit], r[1])
    video = unit_members_t[unit_offset_t[unit] + member]
    fractions = tf.sort(r[2:4])  # source = the earlier frame
    n = frames_t[video]
    frame_idx = pick(n, fractions)
    base = path_t[video]

    def frame_path(k):
      # Zero-pad the frame number to the folder's width (as_string's width must be static).
      digits = tf.strings.join(["0" * 20, tf.strings.as_string(start_t[video] + k)])
      width = width_t[video]
      padded = tf.strings.substr(digits, tf.strings.length(digits) - width, width)
      by_pattern = base + prefix_t[video] + padded + ext_t[video]
      by_list = base + names_t[tf.minimum(offset_t[video] + k, num_names - 1)]
      return tf.where(tf.equal(naming_t[video], _NAMED_BY_PATTERN), by_pattern, by_list)

    is_files = tf.equal(branch_t[video], _FILES)
    path_a = tf.where(is_files, frame_path(frame_idx[0]), base)
    path_b = tf.where(is_files, frame_path(frame_idx[1]), base)
    return {
      "branch": branch_t[video],
      "video": base,
      "frame_hw": frame_hw_t[video],
      "path_a": path_a,
      "path_b": path_b,
      "frame_idx": frame_idx,
      "fractions": tf.cast(fractions, tf.float32),
    }

  def decode(path):
    """float32 [h, w, 3] and the file's own shape [h, w, channels]."""
    # Decoded with its own channels and converted here (the same pixels as channels=3: grey is
    # replicated, alpha dropped), so that a grey or RGBA frame can be reported.
    image = tf.io.decode_image(
      tf.io.read_file(path), channels=0, dtype=tf.float32, expand_animations=False
    )
    shape = tf.shape(image)
    rgb = tf.gather(image, tf.where(shape[2] >= 3, [0, 1, 2], [0, 0, 0]), axis=2)
    rgb.set_shape([None, None, 3])
    return rgb, shape

  def checked(c, a, b, shape_a, shape_b):
    """`a`, `b` after warning about odd frames (a Python call only for pairs with one)."""
    expected = tf.cast(c["frame_hw"], tf.int32)
    expected = tf.where(expected[0] > 0, expected, shape_a[:2])
    odd = tf.reduce_any(
      [
        shape_a[2] != 3,
        shape_b[2] != 3,
        tf.reduce_any(shape_a[:2] != expected),
        tf.reduce_any(shape_b[:2] != expected),
      ]
    )

    def warn():
      return tf.numpy_function(
        _py_warn_frames,
        [c["video"], c["path_a"], c["path_b"], shape_a, shape_b, c["frame_hw"], size],
        tf.bool,
      )

    done = tf.cond(odd, warn, lambda: tf.constant(True))
    with tf.control_dependencies([done]):
      return tf.identity(a), tf.identity(b)

  # Loaders return the frames at their size on disk (float32 [h, w, 3]); `finish` resizes them
  # outside the nested per-example datasets (fewer functions to instantiate).
  def load_files(c):
    (a, shape_a), (b, shape_b) = decode(c["path_a"]), decode(c["path_b"])
    return checked(c, a, b, shape_a, shape_b)

  def load_strip(c):
    strip, shape = decode(c["path_a"])
    h = tf.shape(strip)[0]
    idx = tf.cast(c["frame_idx"], tf.int32)
    frame_shape = tf.stack([h, h, shape[2]])
    a, b = (strip[:, idx[k] * h : (idx[k] + 1) * h] for k in range(2))
    return checked(c, a, b, frame_shape, frame_shape)

  def load_python(c):
    a, b, ok = tf.numpy_function(
      _py_read_video_pair, [c["path_a"], c["fractions"]], [tf.uint8, tf.uint8, tf.bool]
    )
    a.set_shape([None, None, 3])
    b.set_shape([None, None, 3])
    return augment_lib.to_float_image(a), augment_lib.to_float_image(b), ok

  @_plain
  def load(c):
    loaders = {
      _FILES: lambda: (*load_files(c), tf.constant(True)),
      _STRIP: lambda: (*load_strip(c), tf.constant(True)),
      _PYTHON: lambda: load_python(c),
    }
    if len(t.branches) == 1:
      return loaders[t.branches[0]]()
    # switch_case wants the branch keys 0..n-1: use positions in the list of branches in use.
    position = tf.constant(np.searchsorted(t.branches, np.arange(3)), tf.int32)[c["branch"]]
    return tf.switch_case(position, [loaders[b] for b in t.branches])

  diagnose_fn = _make_diagnose(on_bad_frame)

  @_plain
  def diagnose(c):
    a, b, ok = tf.numpy_function(
      diagnose_fn,
      [c["branch"], c["path_a"], c["path_b"], c["fractions"]],
      [tf.float32, tf.float32, tf.bool],
    )
    a.set_shape([None, None, 3])
    b.set_shape([None, None, 3])
    ok.set_shape([])
    return a, b, ok

  @_plain
  def is_ok(a, b, ok):
    del a, b
    return ok

  @_plain
  def candidate(index, attempt):
    c = sample(index, attempt)
    tried = tf.data.Dataset.from_tensors(c).map(load).ignore_errors().filter(is_ok)
    return tried.concatenate(tf.data.Dataset.from_tensors(c).map(diagnose)).take(1)

  @_plain
  def give_up(index):
    a, b, ok = tf.numpy_function(_all_bad, [index], [tf.float32, tf.float32, tf.bool])
    a.set_shape([None, None, 3])
    b.set_shape([None, None, 3])
    ok.set_shape([])
    return a, b, ok

  @_plain
  def example(index):
    tries = tf.data.Dataset.range(attempts).flat_map(_plain(lambda a: candidate(index, a)))
    tries = tries.filter(is_ok).take(1)
    tries = tries.concatenate(tf.data.Dataset.from_tensors(index).map(give_up)).take(1)
    return tries.map(_plain(lambda a, b, ok: (index, a, b)))

  @_plain
  def finish(index, source, target):
    source = augment_lib.resize_image(source, size)
    target = augment_lib.resize_image(target, size)
    if augment:
      seed_ex = tf.random.experimental.stateless_fold_in(example_seed, index)
      seed_aug = tf.random.experimental.stateless_fold_in(seed_ex, 0)
      source, target = augment_lib.augment_pair(
        source, target, seed_aug, rotation_degrees=rotation_degrees
      )
    return {"source": source, "target": target}

  first = int(start_step) * batch
  ds = tf.data.Dataset.range(first, np.iinfo(np.int64).max)
  ds = ds.interleave(
    example,
    cycle_length=max(4, min(batch, 32)),
    block_length=1,
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options)


def _read_ground_truth(path):
  from copart_tf.data.ground_truth import read_ground_truth  # lazy: avoids an import cycle

  return read_ground_truth(path)


def _nearest_indices(out_size, in_size):
  """Source index of each output pixel for nearest resizing (pixel-centre aligned)."""
  idx = np.floor((np.arange(out_size) + 0.5) * in_size / out_size).astype(np.int64)
  return np.clip(idx, 0, in_size - 1)


def resize_labels(labels, size):
  """Nearest-neighbour resize of an integer label map `[H, W]` to `[size, size]` (NumPy)."""
  h, w = labels.shape[:2]
  if (h, w) == (size, size):
    return labels
  return labels[_nearest_indices(size, h)][:, _nearest_indices(size, w)]


def scale_landmarks(landmarks, height, width, size):
  """Pixel (x, y) in an H x W frame -> pixel (x, y) in the S x S resized frame.

  Pixel centres are at integer coordinates (`copart_tf.ops.grid`), so
  ``x' = (x + 0.5) * S / W - 0.5``.
  """
  scale = np.array([size / width, size / height], np.float32)
  return ((np.asarray(landmarks, np.float32) + 0.5) * scale - 0.5).astype(np.float32)


def _resize_uint8(frame, size):
  if frame.shape[0] == size and frame.shape[1] == size:
    return frame
  resized = augment_lib.resize_image(frame, size).numpy()
  return np.clip(np.round(resized * 255.0), 0, 255).astype(np.uint8)


def _default_visible(landmarks, height, width):
  """A landmark is visible when finite and inside the frame (pixel centres at integers)."""
  finite = np.all(np.isfinite(landmarks), axis=-1)
  with np.errstate(invalid="ignore"):
    inside = (
      (landmarks[:, 0] >= -0.5)
      & (landmarks[:, 0] <= width - 0.5)
      & (landmarks[:, 1] >= -0.5)
      & (landmarks[:, 1] <= height - 0.5)
    )
  return finite & inside


def iterate_eval_frames(data_dir, split, image_size, max_frames_per_video=None):
  """Yields every labelled frame, in order, of every video of `split` that has ground truth.

  Ground truth comes from ``root/labels`` in any layout of `copart_tf.data.labels` (our npz, a
  folder of per-frame label PNGs, the reference's landmark pickle); videos without any are
  skipped, and what is missing is logged once (one line per piece, naming the metric that skips
  it). Frames are streamed (one in memory at a time per video).

  Args:
    data_dir: dataset root.
    split: ``"train"`` / ``"test"``.
    image_size: S; images and labels are resized to S x S.
    max_frames_per_video: yield at most this many frames of each video (None = all).

  Yields:
    dicts with
      ``video`` (str name), ``frame_index`` (int),
      ``image`` uint8 `[S, S, 3]` (area / bilinear resize),
      ``original_shape`` (H, W) of the frame on disk,
      ``parts`` uint8 `[S, S]` (nearest resize) or None (no part labels for this frame),
      ``links`` uint8 `[S, S]` or None,
      ``landmarks`` float32 `[L, 2]` (x, y) in pixels of the resized frame, or None,
      ``visible`` bool `[L]` or None (False where a landmark is not finite; without a visible
      array: finite and inside the frame),
      ``part_names`` (list of K+1 str, or None when the files name no parts), ``landmark_names``
      (list of str, or None).

  Raises:
    DataError: no ground truth in the split, unreadable frame or label file, frame count or size
      that does not match the ground truth (names the file).
  """
  if not isinstance(image_size, int | np.integer) or image_size < 1:
    raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
  from copart_tf.data import labels as labels_lib  # lazy: avoids an import cycle

  size = int(image_size)
  entries = layout.scan_split(data_dir, split, on_bad_frame="fail", validate_sample=0)
  labeled = labels_lib.find_split_labels(data_dir, split, entries)
  if not labeled:
    folder = os.path.join(os.fspath(data_dir), "labels")
    raise DataError(
      f"no ground truth for split {split!r}: expected {os.path.join(folder, split, '<video>.npz')}, "
      f"{os.path.join(folder, split, '<video>', '<frame>.png')} or a landmark pickle "
      f"{os.path.join(folder, split + '_gt.pkl')} for some of the {len(entries)} videos"
    )
  labels_lib.log_missing(data_dir, split, labeled)
  for video_labels in labeled:
    entry = video_labels.entry
    gt = video_labels.read()
    where = gt.where
    num_gt = gt.num_frames
    if num_gt is not None and entry.num_frames is not None and entry.num_frames != num_gt:
      raise DataError(
        f"{where}: has {num_gt} frames of ground truth but video {entry.path} has "
        f"{entry.num_frames}"
      )
    wanted = None if gt.frame_indices is None else set(gt.frame_indices)
    last_wanted = None if gt.frame_indices is None else gt.frame_indices[-1]
    stream = video_io.iterate_video_frames(entry.path)
    count = emitted = 0
    stopped = False
    try:
      for t, frame in enumerate(stream):
        count = t + 1
        if max_frames_per_video is not None and emitted >= max_frames_per_video:
          stopped = True
          break
        if num_gt is not None and t >= num_gt:
          raise DataError(
            f"{where}: has {num_gt} frames of ground truth but video {entry.path} has more"
          )
        if wanted is not None and t not in wanted:
          if t > last_wanted:
            stopped = True
            break
          continue
        h, w = frame.shape[:2]
        parts = gt.parts_at(t)
        if parts is not None and parts.shape != (h, w):
          raise DataError(
            f"{where}: label maps are {parts.shape[0]}x{parts.shape[1]} but frame {t} of "
            f"{entry.path} is {h}x{w}"
          )
        links = gt.links_at(t)
        landmarks, visible = gt.landmarks_at(t)
        if landmarks is not None:
          landmarks = np.asarray(landmarks, np.float32)
          if visible is None:
            visible = _default_visible(landmarks, h, w)
          visible = np.asarray(visible, bool) & np.all(np.isfinite(landmarks), axis=-1)
          landmarks = np.where(np.isfinite(landmarks), landmarks, -1.0).astype(np.float32)
          landmarks = scale_landmarks(landmarks, h, w, size)
        emitted += 1
        yield {
          "video": entry.name,
          "frame_index": t,
          "image": _resize_uint8(frame, size),
          "original_shape": (h, w),
          "parts": None if parts is None else resize_labels(parts, size),
          "links": None if links is None else resize_labels(links, size),
          "landmarks": landmarks,
          "visible": visible,
          "part_names": gt.part_names,
          "landmark_names": gt.landmark_names,
        }
    finally:
      stream.close()
    if stopped:
      continue
    if num_gt is not None and max_frames_per_video is None and count != num_gt:
      raise DataError(
        f"{where}: has {num_gt} frames of ground truth but video {entry.path} has {count}"
      )
    if last_wanted is not None and last_wanted >= count:
      raise DataError(
        f"{where}: has ground truth for frame {last_wanted} but video {entry.path} has {count} "
        "frames"
      )
