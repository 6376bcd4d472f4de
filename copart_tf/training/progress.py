"""Training progress: a bar with ETA on a terminal, one log line per interval otherwise."""

import sys
import time

from absl import logging


def format_duration(seconds):
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
  """Reports training progress.

  On a terminal (stderr is a TTY) the bar is redrawn in place after every step; elsewhere (CI,
  nohup, log files) a single line is logged every `log_every` steps so logs stay readable.

  Args:
    total_steps: the step the run ends at.
    start_step: the step the run (re)starts from.
    log_every: steps between log lines when not on a terminal.
    stream: where the bar goes (default stderr).
  """

  def __init__(self, total_steps, start_step=0, log_every=50, stream=None):
    self.total = int(total_steps)
    self.start = int(start_step)
    self.log_every = max(1, int(log_every))
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.t0 = time.time()

  def eta(self, step):
    done = step - self.start
    if done <= 0:
      return float("nan")
    return (time.time() - self.t0) / done * (self.total - step)

  def update(self, step, message=""):
    """Call after finishing `step` (1-based count of completed steps)."""
    fraction = step / max(self.total, 1)
    elapsed = time.time() - self.t0
    eta = self.eta(step)
    eta_text = format_duration(eta) if eta == eta else "?"
    if self.tty:
      width = 30
      filled = int(width * fraction)
      bar = "#" * filled + "-" * (width - filled)
      self.stream.write(
        f"\r[{bar}] {step}/{self.total} {100 * fraction:5.1f}% "
        f"{format_duration(elapsed)}<{eta_text} {message}\033[K"
      )
      self.stream.flush()
    elif step % self.log_every == 0 or step == self.total:
      logging.info(
        "step %d/%d (%.1f%%) elapsed %s eta %s %s",
        step,
        self.total,
        100 * fraction,
        format_duration(elapsed),
        eta_text,
        message,
      )

  def close(self):
    if self.tty:
      self.stream.write("\n")
      self.stream.flush()
