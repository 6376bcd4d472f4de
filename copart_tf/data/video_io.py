"""Reading frames from the three on-disk video forms of the FOMM layout (DESIGN.md §6).

A video is one of:

- a **frame folder**: a directory of ``.png`` / ``.jpg`` frames sorted by file name (whatever the
  directory is called: users' folders are often named ``xxx.mp4``);
- a **video file**: ``.mp4`` / ``.mov`` / ``.avi`` / ``.mkv`` / ``.webm`` (decoded by ffmpeg through
  imageio-ffmpeg) or ``.gif`` (decoded by Pillow);
- a **frame strip**: a ``.png`` / ``.jpg`` image of ``T`` square frames side by side
  (width = ``T`` x height).

Frames always come out as uint8 `[H, W, 3]` RGB: gray is replicated, alpha is dropped, 16-bit
images are scaled to 8 bits. Image files are decoded with TensorFlow's own decoder
(`tf.io.decode_image`), the same one the training pipeline uses, so a frame looks the same in
training, evaluation and the applications.

Memory: video files are never loaded whole. `VideoFile` reads one frame at a time (ffmpeg is
restarted with a seek when the requested frame is behind the current position or more than 100
frames ahead, otherwise frames are skipped forward) and keeps at most `VideoFile.CACHE_FRAMES`
decoded frames. The training pipeline shares open readers through a small LRU pool
(`read_video_frames`), so at most `POOL_SIZE` ffmpeg processes are alive per process.
"""

import collections
import os
import re
import subprocess
import threading

import numpy as np

from copart_tf.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
STRIP_EXTENSIONS = (".png", ".jpg", ".jpeg")
FFMPEG_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
GIF_EXTENSIONS = (".gif",)
VIDEO_EXTENSIONS = FFMPEG_EXTENSIONS + GIF_EXTENSIONS

# Frame folders and strips carry no frame rate; the applications use this one.
DEFAULT_FPS = 25.0
# Open video readers shared by the training pipeline (each holds one ffmpeg process).
POOL_SIZE = 8


def _ext(path):
  return os.path.splitext(os.fspath(path))[1].lower()


def is_image_file(path):
  """True if `path` has a frame-image extension (png/jpg/jpeg/bmp)."""
  return _ext(path) in IMAGE_EXTENSIONS


def is_video_file(path):
  """True if `path` has a video-file extension (mp4/mov/avi/mkv/webm/gif)."""
  return _ext(path) in VIDEO_EXTENSIONS


def list_frame_files(folder):
  """Frame files of a frame folder, sorted by name.

  Hidden files (``.DS_Store``, ``._x.png``) and non-image files are ignored.

  Args:
    folder: path of a frame folder.

  Returns:
    list of full paths, sorted by file name.

  Raises:
    DataError: the folder cannot be listed.
  """
  try:
    names = os.listdir(folder)
  except OSError as e:
    raise DataError(f"cannot list frame folder {folder}: {e}") from e
  names = sorted(n for n in names if not n.startswith(".") and is_image_file(n))
  return [os.path.join(folder, n) for n in names]


def to_rgb_uint8(array, path="<array>"):
  """Converts a decoded image to uint8 `[H, W, 3]` RGB.

  Args:
    array: `[H, W]`, `[H, W, 1]` (gray), `[H, W, 2]` (gray + alpha), `[H, W, 3]` or `[H, W, 4]`
      (alpha dropped); uint8, uint16 (scaled by 255/65535), bool, or float in [0, 1].
    path: name used in error messages.

  Returns:
    uint8 `[H, W, 3]`.

  Raises:
    DataError: unsupported shape.
  """
  a = np.asarray(array)
  if a.ndim == 2:
    a = a[:, :, None]
  if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
    raise DataError(f"{path}: unsupported image shape {a.shape} (expected [H, W] or [H, W, 1-4])")
  if a.shape[2] in (1, 2):
    a = np.repeat(a[:, :, :1], 3, axis=2)
  elif a.shape[2] == 4:
    a = a[:, :, :3]
  if a.dtype == np.uint8:
    return np.ascontiguousarray(a)
  if a.dtype == np.uint16:
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
  if a.dtype == np.bool_:
    return a.astype(np.uint8) * 255
  if np.issubdtype(a.dtype, np.floating):
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
  if np.issubdtype(a.dtype, np.integer):  # e.g. int32 'I' mode images holding 16-bit data
    scale = 65535 if a.max(initial=0) > 255 else 255
    return np.clip(np.round(a.astype(np.float64) * (255.0 / scale)), 0, 255).astype(np.uint8)
  raise DataError(f"{path}: unsupported image dtype {a.dtype}")


def read_image(path):
  """Decodes one image file with TensorFlow (the training pipeline's decoder).

  Args:
    path: a png/jpg/bmp file (gray, RGBA, palette, 16-bit are all fine).

  Returns:
    uint8 `[H, W, 3]`.

  Raises:
    DataError: missing, empty or undecodable file (the message names it).
  """
  import tensorflow as tf  # lazy: keep `import video_io` light

  if not os.path.isfile(path):
    raise DataError(f"frame {path} does not exist")
  try:
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
  except (tf.errors.OpError, ValueError) as e:
    raise DataError(f"cannot decode frame {path}: {_first_line(e)}") from e
  return image.numpy()


def check_image_file(path):
  """Fully decodes an image with Pillow and returns a reason it is bad, or None if it is fine.

  Used to name the culprit when TensorFlow's decoder failed inside tf.data, and for the
  cheap header checks at scan time (see `read_image_header`).
  """
  from PIL import Image

  if not os.path.exists(path):
    return "file does not exist"
  try:
    if os.path.getsize(path) == 0:
      return "file is empty"
    with Image.open(path) as im:
      im.verify()  # chunk structure and checksums (catches a PNG cut short after its pixels)
    with Image.open(path) as im:
      im.load()  # the pixels
  except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
    return f"{type(e).__name__}: {e}"
  return None


def read_image_header(path):
  """Reads only the header of an image file (cheap).

  Args:
    path: image file.

  Returns:
    (width, height, mode) as reported by Pillow.

  Raises:
    DataError: missing, empty or unrecognised file.
  """
  from PIL import Image

  try:
    if os.path.getsize(path) == 0:
      raise DataError(f"frame {path} is an empty file")
    with Image.open(path) as im:
      return im.size[0], im.size[1], im.mode
  except DataError:
    raise
  except FileNotFoundError as e:
    raise DataError(f"frame {path} does not exist") from e
  except Exception as e:
    raise DataError(f"cannot read image header of {path}: {type(e).__name__}: {e}") from e


def strip_num_frames(path, width, height):
  """Number of square frames in a horizontal strip; raises DataError if not a strip."""
  if height < 1 or width < height or width % height:
    raise DataError(
      f"{path}: a frame strip must be T square frames side by side (width a multiple of height), "
      f"got {width}x{height}"
    )
  return width // height


def _first_line(error):
  text = getattr(error, "message", None) or str(error)
  text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  # TF prefixes op errors with '{{function_node ...}}'.
  return re.sub(r"^\{\{[^}]*\}\}\s*", "", text)


def count_video_frames(path):
  """Exact number of frames of a video file.

  For ffmpeg formats the video stream is demuxed without decoding (``-c copy``: fast even for
  long videos); if ffmpeg cannot report a count that way the stream is decoded. GIFs are counted
  by Pillow.

  Raises:
    DataError: unreadable file or no frames.
  """
  path = os.fspath(path)
  if _ext(path) in GIF_EXTENSIONS:
    return _GifBackend(path).num_frames
  return _ffmpeg_count_frames(path)


def _ffmpeg_count_frames(path):
  import imageio_ffmpeg

  exe = imageio_ffmpeg.get_ffmpeg_exe()
  for codec_args in (["-c", "copy"], ["-vf", "null"]):
    cmd = [exe, "-nostdin", "-i", path, "-map", "0:v:0", *codec_args, "-f", "null", "-"]
    try:
      out = subprocess.run(cmd, capture_output=True, check=False, timeout=600).stderr
    except (OSError, subprocess.SubprocessError) as e:
      raise DataError(f"cannot run ffmpeg on {path}: {e}") from e
    frames = re.findall(rb"frame=\s*(\d+)", out)
    if frames and int(frames[-1]) > 0:
      return int(frames[-1])
  tail = out.decode(errors="ignore").strip().splitlines()[-1:] if out else []
  raise DataError(f"cannot read video {path}: no frames ({' '.join(tail) or 'ffmpeg failed'})")


class _FfmpegBackend:
  """Random access to an ffmpeg-decodable file through imageio's ffmpeg plugin."""

  def __init__(self, path):
    import imageio

    self.path = path
    try:
      self._reader = imageio.get_reader(path, format="ffmpeg")
      meta = self._reader.get_meta_data()
    except Exception as e:
      raise DataError(f"cannot open video {path}: {_first_line(e)}") from e
    self.fps = float(meta.get("fps") or DEFAULT_FPS)
    self._num_frames = None

  @property
  def num_frames(self):
    if self._num_frames is None:
      self._num_frames = _ffmpeg_count_frames(self.path)
    return self._num_frames

  def read(self, index):
    # imageio seeks (restarts ffmpeg with -ss) when going backwards or > 100 frames ahead and
    # otherwise decodes forward, so sorted requests stream.
    return self._reader.get_data(index)

  def iterate(self):
    import imageio

    reader = imageio.get_reader(self.path, format="ffmpeg")
    try:
      yield from reader
    finally:
      reader.close()

  def close(self):
    self._reader.close()


class _GifBackend:
  """Random access to a GIF through Pillow (which handles disposal and seeking backwards)."""

  def __init__(self, path):
    from PIL import Image

    self.path = path
    try:
      self._image = Image.open(path)
      self.num_frames = int(getattr(self._image, "n_frames", 1))
    except Exception as e:
      raise DataError(f"cannot open GIF {path}: {type(e).__name__}: {e}") from e
    duration_ms = self._image.info.get("duration") or 0
    self.fps = 1000.0 / duration_ms if duration_ms > 0 else DEFAULT_FPS

  def read(self, index):
    self._image.seek(index)
    return np.asarray(self._image.convert("RGB"))

  def iterate(self):
    for i in range(self.num_frames):
      yield self.read(i)

  def close(self):
    self._image.close()


class VideoFile:
  """Random-access frame reader for a video file with a bounded frame cache.

  Not thread-safe by itself; `read_video_frames` serialises access per file.

  Attributes:
    path: the file.
    fps: frames per second (from the container; GIF: from the first frame's duration).
    num_frames: exact frame count (computed on first use for ffmpeg formats).
  """

  CACHE_FRAMES = 4

  def __init__(self, path):
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise DataError(f"video {self.path} does not exist")
    if os.path.getsize(self.path) == 0:
      raise DataError(f"video {self.path} is an empty file")
    if _ext(self.path) in GIF_EXTENSIONS:
      self._backend = _GifBackend(self.path)
    else:
      self._backend = _FfmpegBackend(self.path)
    self.fps = self._backend.fps
    self._cache = collections.OrderedDict()
    self.lock = threading.Lock()
    self.closed = False

  @property
  def num_frames(self):
    return self._backend.num_frames

  def read(self, index):
    """Frame `index` as uint8 `[H, W, 3]`; raises DataError if it cannot be decoded."""
    index = int(index)
    if index in self._cache:
      self._cache.move_to_end(index)
      return self._cache[index]
    n = self.num_frames
    if not 0 <= index < n:
      raise DataError(f"{self.path}: frame {index} out of range (video has {n} frames)")
    try:
      frame = to_rgb_uint8(self._backend.read(index), self.path)
    except DataError:
      raise
    except Exception as e:
      raise DataError(f"cannot decode frame {index} of {self.path}: {_first_line(e)}") from e
    self._cache[index] = frame
    while len(self._cache) > self.CACHE_FRAMES:
      self._cache.popitem(last=False)
    return frame

  def __iter__(self):
    """Streams all frames in order (a fresh decoder; bounded memory)."""
    try:
      for frame in self._backend.iterate():
        yield to_rgb_uint8(frame, self.path)
    except DataError:
      raise
    except Exception as e:
      raise DataError(f"cannot decode {self.path}: {_first_line(e)}") from e

  def close(self):
    if not self.closed:
      self.closed = True
      self._backend.close()
      self._cache.clear()


class _ReaderPool:
  """A thread-safe LRU of open `VideoFile`s (bounded number of ffmpeg processes)."""

  MAX_FAILED = 10000

  def __init__(self, size):
    self.size = size
    self._lock = threading.Lock()
    self._readers = collections.OrderedDict()
    self._failed = {}  # path -> message of a file that could not be opened (not retried)

  def _get(self, path):
    with self._lock:
      if path in self._failed:
        raise DataError(self._failed[path])
      reader = self._readers.get(path)
      if reader is not None:
        self._readers.move_to_end(path)
        return reader
    try:
      reader = VideoFile(path)  # opening (ffmpeg start) outside the pool lock
    except DataError as e:
      with self._lock:
        if len(self._failed) < self.MAX_FAILED:
          self._failed[path] = str(e)
      raise
    evicted = []
    with self._lock:
      if path in self._readers:  # another thread opened it meanwhile
        evicted.append(reader)
        reader = self._readers[path]
      else:
        self._readers[path] = reader
        while len(self._readers) > self.size:
          evicted.append(self._readers.popitem(last=False)[1])
    for old in evicted:
      with old.lock:
        old.close()
    return reader

  def read(self, path, fractions):
    for _ in range(100):  # a closed reader is never in the pool: this loops at most a few times
      reader = self._get(path)
      with reader.lock:
        if reader.closed:  # evicted by another thread between _get and the lock: reopen
          continue
        try:
          return self._read_locked(reader, fractions)
        except DataError:
          self._discard(path, reader)
          raise
    raise DataError(f"cannot keep a reader of {path} open (reader pool of {self.size} thrashing)")

  def num_frames(self, path):
    for _ in range(100):
      reader = self._get(path)
      with reader.lock:
        if reader.closed:
          continue
        try:
          return reader.num_frames
        except DataError:
          self._discard(path, reader)
          raise
    raise DataError(f"cannot keep a reader of {path} open (reader pool of {self.size} thrashing)")

  @staticmethod
  def _read_locked(reader, fractions):
    n = reader.num_frames
    indices = [min(int(f * n), n - 1) for f in fractions]
    frames = {i: reader.read(i) for i in sorted(set(indices))}
    return [frames[i] for i in indices]

  def _discard(self, path, reader):
    with self._lock:
      if self._readers.get(path) is reader:
        del self._readers[path]
    try:
      reader.close()
    except Exception:  # closing a broken reader must not mask the real error
      pass

  def clear(self):
    with self._lock:
      readers = list(self._readers.values())
      self._readers.clear()
      self._failed.clear()
    for reader in readers:
      with reader.lock:
        reader.close()


_POOL = _ReaderPool(POOL_SIZE)


def read_video_frames(path, fractions):
  """Reads frames at relative positions of a video file through the shared reader pool.

  Args:
    path: video file (mp4/mov/avi/mkv/webm/gif).
    fractions: floats in [0, 1); frame ``min(floor(f * T), T - 1)`` is read for each, where T is
      the video's exact frame count (so callers need not know T).

  Returns:
    list of uint8 `[H, W, 3]` frames, one per fraction.

  Raises:
    DataError: unreadable file or frame (names the file).
  """
  return _POOL.read(os.fspath(path), [float(f) for f in fractions])


def video_num_frames(path):
  """Exact frame count of a video file, through the reader pool of `read_video_frames`.

  Raises:
    DataError: unreadable file (names it).
  """
  return _POOL.num_frames(os.fspath(path))


def close_video_readers():
  """Closes every pooled reader (ends their ffmpeg processes)."""
  _POOL.clear()


class FrameStream:
  """Iterable over the frames of one video with bounded memory (see `iterate_video_frames`).

  Attributes:
    path: the video (folder, file or strip).
    kind: ``"frames"``, ``"video"`` or ``"strip"``.
    fps: frames per second (`DEFAULT_FPS` for frame folders and strips).
  """

  def __init__(self, path):
    self.path = os.fspath(path)
    self._files = None
    self._video = None
    self._strip = None
    if os.path.isdir(self.path):
      self.kind = "frames"
      self._files = list_frame_files(self.path)
      if not self._files:
        raise DataError(f"frame folder {self.path} contains no png/jpg frames")
      self.fps = DEFAULT_FPS
    elif is_video_file(self.path):
      self.kind = "video"
      self._video = VideoFile(self.path)
      self.fps = self._video.fps
    elif _ext(self.path) in STRIP_EXTENSIONS:
      self.kind = "strip"
      if not os.path.isfile(self.path):
        raise DataError(f"video {self.path} does not exist")
      width, height, _ = read_image_header(self.path)
      self._strip = strip_num_frames(self.path, width, height)
      self.fps = DEFAULT_FPS
    elif not os.path.exists(self.path):
      raise DataError(f"video {self.path} does not exist")
    else:
      raise DataError(
        f"{self.path}: not a video (expected a frame folder, {'/'.join(VIDEO_EXTENSIONS)} "
        f"or a {'/'.join(STRIP_EXTENSIONS)} frame strip)"
      )

  @property
  def num_frames(self):
    """Number of frames (for ffmpeg files this runs a fast demux pass the first time)."""
    if self._files is not None:
      return len(self._files)
    if self._strip is not None:
      return self._strip
    return self._video.num_frames

  def __len__(self):
    return self.num_frames

  def __iter__(self):
    if self._files is not None:
      for f in self._files:
        yield read_image(f)
    elif self._strip is not None:
      strip = read_image(self.path)  # one image: its frames are already in memory
      h = strip.shape[0]
      for i in range(self._strip):
        yield np.ascontiguousarray(strip[:, i * h : (i + 1) * h])
    else:
      yield from self._video

  def close(self):
    if self._video is not None:
      self._video.close()


def iterate_video_frames(path):
  """Streams the frames of a video one by one (for segment / animate).

  Usage::

    stream = iterate_video_frames("driving.mp4")
    writer = imageio.get_writer("out.mp4", fps=stream.fps)
    for frame in stream:  # uint8 [H, W, 3]
      ...

  Args:
    path: a frame folder, a video file (mp4/mov/avi/mkv/webm/gif) or a frame strip.

  Returns:
    a `FrameStream`: iterate it for uint8 `[H, W, 3]` frames in order; ``.fps`` and
    ``.num_frames`` describe the video. Only one frame (a strip: the strip) is in memory at a time.

  Raises:
    DataError: missing path, unknown type, or unreadable video (names the file).
  """
  return FrameStream(path)
