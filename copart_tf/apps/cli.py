"""What the application binaries share: flag parsing, warnings and the one-line error convention.

Every tool prints ``error: <message>`` on stderr and exits with status 2 when the user's input is
at fault (a `CopartError`, an unreadable or unwritable file, a bad flag value), without a stack
trace. Warnings are one ``warning: <message>`` line each.
"""

import sys

from absl import app, flags, logging

from copart_tf import cli_env  # noqa: F401 (TensorFlow's environment, before TF loads)
from copart_tf.errors import ConfigError, CopartError

EXIT_USAGE = 2


def warn(message):
  """Prints one ``warning: <message>`` line on stderr."""
  print(f"warning: {message}", file=sys.stderr, flush=True)


def error(message):
  """Prints one ``error: <message>`` line on stderr and returns the exit status (2)."""
  text = " ".join(str(message).split())  # one line, whatever the message holds
  print(f"error: {text}", file=sys.stderr, flush=True)
  return EXIT_USAGE


def _parse_flags(argv):
  """absl's flag parsing, but a bad flag is an ``error:`` line and exit 2 (no usage dump)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(error(e))


def require(condition, message):
  """Raises `ConfigError(message)` unless `condition`."""
  if not condition:
    raise ConfigError(message)


def run(main):
  """Runs ``main()`` (no arguments, returns an exit status) as an absl program.

  `CopartError` and `OSError` become ``error: <message>`` lines and exit status 2; Ctrl-C exits
  with 130.
  """

  def wrapped(argv):
    if len(argv) > 1:
      return error(f"unexpected arguments {argv[1:]} (flags look like --name=value)")
    if not flags.FLAGS["verbosity"].present:
      # TensorFlow's INFO lines (SavedModel writing, ...) drown the tools' own output.
      logging.set_verbosity(logging.WARNING)
    try:
      return main()
    except CopartError as e:
      return error(e)
    except OSError as e:  # unwritable output, full disk, ffmpeg gone ...
      return error(f"{type(e).__name__}: {e}")
    except KeyboardInterrupt:
      print("error: interrupted", file=sys.stderr)
      return 130

  app.run(wrapped, flags_parser=_parse_flags)
