"""Reading the applications' inputs and streaming their outputs (bounded memory).

Inputs (`open_input`): a video file (mp4/mov/avi/mkv/webm/gif), a frame folder, a frame strip
(with ``strip=True``) or a single image (png/jpg/bmp). Frames come out one at a time as uint8
`[H, W, 3]`; frames with a side above ``max_side`` are downscaled (area average, aspect kept, one
warning), and frames whose size differs from the first frame's are resized to it (one warning),
since a video has one frame size.

Outputs: `VideoWriter` streams frames into an mp4 (H.264 through imageio-ffmpeg) or a gif
(ffmpeg's gif encoder with a palette per frame); `FrameWriter` writes numbered PNGs. Nothing keeps
past frames in memory.
"""

import os

import numpy as np
from PIL import Image

from copart_tf.data import video_io
from copart_tf.errors import DataError

DEFAULT_MAX_SIDE = 2048
# Quality of the H.264 encode (imageio-ffmpeg scale 0-10; 8 = crf 10, near lossless).
MP4_QUALITY = 8


def resize_frame(frame, height, width):
  """Resizes uint8 `[H, W, 3]` to `[height, width, 3]` (area average down, bilinear up)."""
  if frame.shape[:2] == (height, width):
    return frame
  down = height <= frame.shape[0] and width <= frame.shape[1]
  method = Image.Resampling.BOX if down else Image.Resampling.BILINEAR
  return np.asarray(Image.fromarray(frame).resize((width, height), method))


def limited_size(height, width, max_side):
  """(height, width) scaled down (aspect kept) so that neither side exceeds `max_side`."""
  longest = max(height, width)
  if longest <= max_side:
    return height, width
  scale = max_side / longest
  return max(1, round(height * scale)), max(1, round(width * scale))


class InputFrames:
  """The frames of an application input, streamed.

  Attributes:
    path: the input.
    kind: ``"video"`` (file), ``"frames"`` (folder), ``"strip"`` or ``"image"``.
    fps: frames per second (container rate; `video_io.DEFAULT_FPS` for folders, strips, images).
    num_frames: number of frames (known before decoding; ffmpeg files are demuxed once).
    input_size: (H, W) of the first frame as stored.
    size: (H, W) of the frames yielded (after the `max_side` limit).

  Args:
    path: input path.
    max_side: frames with a longer side are downscaled to it.
    strip: read a png/jpg as a horizontal strip of square frames instead of one image.
    warn: callable(str) for warnings.

  Raises:
    DataError: missing, unreadable or empty input (names the file).
  """

  def __init__(self, path, max_side=DEFAULT_MAX_SIDE, strip=False, warn=None):
    self.path = os.fspath(path)
    self.max_side = int(max_side)
    self._warn = warn or (lambda message: None)
    self._stream = None
    self._image = None
    if not os.path.exists(self.path):
      raise DataError(f"{self.path} does not exist")
    if (
      not strip
      and os.path.isfile(self.path)
      and video_io.is_image_file(self.path)
      and not video_io.is_video_file(self.path)
    ):
      self.kind = "image"
      self._image = video_io.read_image(self.path)
      self.fps = video_io.DEFAULT_FPS
      self.num_frames = 1
      first_size = self._image.shape[:2]
    else:
      self._stream = video_io.iterate_video_frames(self.path)
      self.kind = self._stream.kind
      self.fps = float(self._stream.fps)
      self.num_frames = int(self._stream.num_frames)
      if self.num_frames < 1:
        raise DataError(f"{self.path}: no frames")
      first_size = None
    self._first_size = first_size
    self.input_size = None
    self.size = None
    if first_size is not None:
      self._set_size(first_size)

  def _set_size(self, input_size):
    self.input_size = (int(input_size[0]), int(input_size[1]))
    self.size = limited_size(*self.input_size, self.max_side)
    if self.size != self.input_size:
      self._warn(
        f"{self.path}: frames are {self.input_size[1]}x{self.input_size[0]} pixels, more than "
        f"--max_side={self.max_side}: downscaled to {self.size[1]}x{self.size[0]} (outputs are "
        "at that size; track coordinates stay in input pixels)"
      )

  def peek_size(self):
    """(input size, processed size) of the first frame, decoding it if needed."""
    if self.size is None:
      frames = iter(self)
      try:
        next(frames)
      except StopIteration:
        raise DataError(f"{self.path}: no frames") from None
      finally:
        frames.close()
    return self.input_size, self.size

  def __iter__(self):
    """Yields uint8 `[H, W, 3]` frames of size `self.size`."""
    if self._image is not None:
      yield resize_frame(self._image, *self.size)
      return
    count = 0
    warned = False
    for frame in self._stream:
      if self.size is None:
        self._set_size(frame.shape[:2])
      if frame.shape[:2] != self.input_size and not warned:
        warned = True
        self._warn(
          f"{self.path}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, the first frame "
          f"{self.input_size[1]}x{self.input_size[0]}: resized to the first frame's size"
        )
      yield resize_frame(frame, *self.size)
      count += 1
    if count == 0:
      raise DataError(f"{self.path}: no frames could be decoded")

  def batches(self, batch_size):
    """Yields (index of the first frame, uint8 `[B, H, W, 3]`) with B <= `batch_size`."""
    batch, start = [], 0
    for index, frame in enumerate(self):
      batch.append(frame)
      if len(batch) == batch_size:
        yield start, np.stack(batch)
        batch, start = [], index + 1
    if batch:
      yield start, np.stack(batch)

  def close(self):
    if self._stream is not None:
      self._stream.close()


def open_input(path, max_side=DEFAULT_MAX_SIDE, strip=False, warn=None):
  """`InputFrames` of `path` (see the class)."""
  return InputFrames(path, max_side=max_side, strip=strip, warn=warn)


def read_single_image(path, max_side=DEFAULT_MAX_SIDE, warn=None):
  """One uint8 `[H, W, 3]` image: an image file, or the first frame of a video / frame folder."""
  frames = open_input(path, max_side=max_side, warn=warn)
  try:
    iterator = iter(frames)
    try:
      return next(iterator)
    finally:
      iterator.close()
  finally:
    frames.close()


def _pad_even(frame):
  """Pads `[H, W, 3]` by edge replication to even H and W (H.264 with yuv420p needs them)."""
  pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
  if pad_h or pad_w:
    frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  return frame


class VideoWriter:
  """Streams uint8 frames into an mp4 (H.264, yuv420p) or gif file.

  The encoder starts on the first frame (its size fixes the video's); later frames must have the
  same size. mp4 frames with an odd side are padded by one replicated row/column.

  Args:
    path: output file; the extension (.mp4 or .gif) picks the format.
    fps: frames per second.
  """

  def __init__(self, path, fps):
    self.path = os.fspath(path)
    self.fps = float(fps)
    self.gif = self.path.lower().endswith(".gif")
    self.num_frames = 0
    self._writer = None
    self._size = None

  def _open(self, height, width):
    import imageio_ffmpeg

    if self.gif:
      # One palette per frame (stats_mode=single, new=1): streams, and part colours stay exact.
      palette = (
        "split[a][b];[a]palettegen=stats_mode=single:reserve_transparent=0[p];"
        "[b][p]paletteuse=new=1:dither=none"
      )
      options = dict(
        codec="gif",
        pix_fmt_out="pal8",
        quality=None,
        output_params=["-vf", palette, "-loop", "0"],
      )
    else:
      options = dict(quality=MP4_QUALITY)
    self._writer = imageio_ffmpeg.write_frames(
      self.path,
      (width, height),
      fps=self.fps,
      macro_block_size=1,
      ffmpeg_log_level="error",
      **options,
    )
    self._writer.send(None)

  def write(self, frame):
    """Appends one uint8 `[H, W, 3]` frame."""
    frame = np.asarray(frame, np.uint8)
    if not self.gif:
      frame = _pad_even(frame)
    if self._writer is None:
      self._size = frame.shape[:2]
      self._open(*self._size)
    elif frame.shape[:2] != self._size:
      raise DataError(f"{self.path}: frame of size {frame.shape[:2]}, the video is {self._size}")
    self._writer.send(np.ascontiguousarray(frame))
    self.num_frames += 1

  def close(self):
    """Finishes the file (waits for ffmpeg)."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class FrameWriter:
  """Writes frames as ``<folder>/<index:06d>.png``."""

  def __init__(self, folder):
    self.folder = os.fspath(folder)
    os.makedirs(self.folder, exist_ok=True)
    self.num_frames = 0

  def write(self, frame, index=None):
    index = self.num_frames if index is None else int(index)
    Image.fromarray(np.asarray(frame, np.uint8)).save(os.path.join(self.folder, f"{index:06d}.png"))
    self.num_frames += 1

  def close(self):
    pass


class Outputs:
  """A set of frame writers fed together (video, gif, PNG frames); closes all of them."""

  def __init__(self, writers):
    self.writers = [w for w in writers if w is not None]

  def write(self, frame):
    for writer in self.writers:
      writer.write(frame)

  def close(self):
    errors = []
    for writer in self.writers:
      try:
        writer.close()
      except Exception as e:  # close every writer; report the first failure
        errors.append(e)
    if errors:
      raise errors[0]

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False
