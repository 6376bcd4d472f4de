"""Progress of a per-frame job: a bar with ETA on a terminal, a line every few seconds otherwise."""

import sys
import time

from copart_tf.training import progress as progress_lib


class FrameProgress:
  """Reports how many frames are done.

  On a terminal (the stream is a TTY) `copart_tf.training.progress.Progress` redraws a bar with
  ETA after every batch; elsewhere (logs, pipes, CI) one line is written every `interval` seconds
  and one at the end, e.g. ``segment: 400/2000 frames (20.0%) 35.1 frames/s elapsed 0:11 eta 0:45``.

  Args:
    total: number of frames (0 or None if unknown).
    label: prefix of the lines.
    stream: where to write (default stderr).
    interval: seconds between lines when not on a terminal.
    enabled: False silences it.
  """

  def __init__(self, total, label="frames", stream=None, interval=10.0, enabled=True):
    self.total = int(total or 0)
    self.label = label
    self.stream = stream or sys.stderr
    self.interval = float(interval)
    self.enabled = bool(enabled)
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.t0 = time.time()
    self._last = self.t0
    self.done = 0
    self._bar = None
    if self.enabled and self.tty and self.total:
      self._bar = progress_lib.Progress(max(self.total, 1), stream=self.stream)

  def rate(self):
    elapsed = time.time() - self.t0
    return self.done / elapsed if elapsed > 0 else 0.0

  def update(self, done):
    """Call with the number of frames finished so far."""
    self.done = int(done)
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(self.done, f"{self.rate():.1f} frames/s")
      return
    now = time.time()
    if now - self._last >= self.interval:
      self._last = now
      self._line()

  def _line(self):
    elapsed = time.time() - self.t0
    if self.total:
      rate = self.rate()
      eta = (self.total - self.done) / rate if rate > 0 else float("nan")
      eta_text = progress_lib.format_duration(eta) if eta == eta else "?"
      text = (
        f"{self.label}: {self.done}/{self.total} frames ({100.0 * self.done / self.total:.1f}%) "
        f"{self.rate():.1f} frames/s elapsed {progress_lib.format_duration(elapsed)} "
        f"eta {eta_text}"
      )
    else:
      text = (
        f"{self.label}: {self.done} frames {self.rate():.1f} frames/s "
        f"elapsed {progress_lib.format_duration(elapsed)}"
      )
    print(text, file=self.stream, flush=True)

  def close(self):
    """Ends the bar (terminal) or writes the final line."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.close()
    else:
      self._line()
