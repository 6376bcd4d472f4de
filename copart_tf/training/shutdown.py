"""SIGTERM / SIGINT during training: stop cleanly instead of hanging or losing the last steps.

`StopSignals` turns the first SIGTERM or SIGINT into

- outside the training loop (start-up, waiting for the cluster, building the model): an
  `Interrupted` exception, so the command exits at once with one line;
- inside the training loop: a request that the loop honours after the steps under way (one
  execution of `model.fit`, at most `callbacks.MAX_STEPS_PER_EXECUTION` steps; all workers
  of a multi-worker run agree on the step, the checkpoint of that step is written, then the
  command exits).

TensorFlow can block the main thread in C++ (a collective waiting for a dead peer, the start of a
multi-worker cluster), where no Python signal handler runs. A watchdog thread, woken through
`signal.set_wakeup_fd`, therefore ends the process with `os._exit` when the main thread has not
finished `grace_s` seconds after the signal, or at once on a second signal.
"""

import os
import select
import signal
import sys
import threading
import time

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_GRACE_S = 60.0


class Interrupted(Exception):  # noqa: N818 (like KeyboardInterrupt: not an error of the user)
  """A SIGTERM or SIGINT arrived outside the training loop."""

  def __init__(self, signum):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum

  @property
  def name(self):
    return signal_name(self.signum)


def signal_name(signum):
  """ "SIGTERM", "SIGINT", ... for a signal number."""
  return signal.Signals(signum).name


def exit_code(signum):
  """The shell's exit status of a process ended by `signum` (143 for SIGTERM, 130 for SIGINT)."""
  return 128 + int(signum)


class StopSignals:
  """Installs SIGTERM / SIGINT handlers for the duration of a `with` block (main thread only).

  Attributes:
    signum: the first signal received (None if none).
  """

  def __init__(self, grace_s=DEFAULT_GRACE_S):
    """Creates the handlers (installed by `__enter__`).

    Args:
      grace_s: seconds the main thread gets to stop after a signal before the watchdog ends the
        process.
    """
    self.grace_s = float(grace_s)
    self.signum = None
    self._in_loop = False
    self._previous = {}
    self._previous_wakeup = -1
    self._pipe = None
    self._watchdog = None
    self._active = False

  @property
  def requested(self):
    """True once a signal asked the training loop to stop."""
    return self.signum is not None

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # signal handlers can only be set from the main thread: leave them alone
    self._active = True
    self._pipe = os.pipe()
    os.set_blocking(self._pipe[1], False)
    self._previous_wakeup = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
    self.reinstall()
    self._watchdog = threading.Thread(target=self._watch, name="stop-signals", daemon=True)
    self._watchdog.start()
    return self

  def reinstall(self):
    """(Re)installs the handlers, e.g. after TensorFlow replaced the SIGTERM one with its own.

    TensorFlow's multi-worker runtime installs a SIGTERM handler that only logs "SIGTERM caught"
    (a preemption notice for its coordination service), so the process would not stop.
    """
    if not self._active:
      return
    for signum in SIGNALS:
      previous = signal.signal(signum, self._handle)
      self._previous.setdefault(signum, previous)

  def __exit__(self, *exc_info):
    if not self._active:
      return False
    self._active = False
    for signum, previous in self._previous.items():
      signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    signal.set_wakeup_fd(self._previous_wakeup)
    os.close(self._pipe[1])  # ends the watchdog (it reads end-of-file)
    self._watchdog.join(timeout=5)
    os.close(self._pipe[0])
    return False

  def training_loop(self):
    """Context: signals inside it request a stop instead of raising `Interrupted`."""
    return _LoopMode(self)

  def _handle(self, signum, frame):
    del frame  # unused
    first = self.signum is None
    if first:
      self.signum = signum
    name = signal.Signals(signum).name
    if self._in_loop:
      if first:
        logging.warning(
          "%s received: stopping after the steps under way (checkpoint, then exit)", name
        )
      return
    raise Interrupted(self.signum)

  def _watch(self):
    """Ends the process if the main thread does not react to a signal in time."""
    read_fd = self._pipe[0]
    received, deadline = [], None
    while True:
      timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
      if timeout == 0.0:
        self._force_exit(received[0], f"did not stop within {self.grace_s:g} s")
      ready, _, _ = select.select([read_fd], [], [], timeout)
      if not ready:
        continue
      try:
        data = os.read(read_fd, 64)
      except OSError:
        return
      if not data:
        return  # __exit__ closed the pipe
      for signum in data:
        if signum not in SIGNALS:
          continue
        received.append(signum)
        if len(received) >= 2:
          self._force_exit(received[0], "a second signal")
        deadline = time.monotonic() + self.grace_s

  def _force_exit(self, signum, why):
    name = signal.Signals(signum).name
    print(
      f"error: {name} received and the run {why} (TensorFlow blocked, e.g. waiting for another "
      "worker); exiting without a final checkpoint",
      file=sys.stderr,
      flush=True,
    )
    os._exit(exit_code(signum))


class _LoopMode:
  def __init__(self, stops):
    self._stops = stops

  def __enter__(self):
    self._stops._in_loop = True  # noqa: SLF001
    return self._stops

  def __exit__(self, *exc_info):
    self._stops._in_loop = False  # noqa: SLF001
    return False
