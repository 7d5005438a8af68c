"""The error boundary of every command: a known fault becomes one paragraph naming what
was wrong and where, and exit status 2, not a traceback.

Known faults: bad settings and inputs (ValueError: ConfigError, RunError, DataError ...),
I/O and permission errors (OSError, a held lock included) and TensorFlow's own errors
(a lost worker, a damaged file). Anything else is a bug and keeps its traceback, and so
does everything with --verbosity=1 or more.
"""

import sys

from absl import app, flags


def _known_faults():
  faults = [ValueError, OSError]
  tf = sys.modules.get("tensorflow")
  if tf is not None:
    faults.append(tf.errors.OpError)
  return tuple(faults)


def _verbose():
  verbosity = flags.FLAGS["verbosity"]
  return verbosity.present and verbosity.value >= 1


def run(command, main):
  """app.run(main) inside the boundary; `command` (e.g. "cmp_tf.export") starts messages."""

  def guarded(argv):
    try:
      return main(argv)
    except _known_faults() as e:
      if _verbose():
        raise
      message = " ".join(str(e).split()) or type(e).__name__
      print(f"{command}: error: {message}", file=sys.stderr, flush=True)
      return 2

  app.run(guarded)
