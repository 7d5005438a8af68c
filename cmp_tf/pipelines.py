"""One way to run an Apache Beam pipeline: the dataset build and the photo index use it.

`--workers` picks Beam's DirectRunner on this machine (0: one worker process per core; 1:
in this process; N: N processes); `--beam_options` passes Beam's own pipeline options
through, e.g. `--runner=FlinkRunner --flink_master=HOST:8081` for a cluster, where
`--workers` is then ignored. A known data fault raised inside a worker (DataError) comes
back to the driver as the same DataError, so the command names the file and line, exits 2
and prints no traceback.
"""

import json
import logging
import os
import re
import shlex

from cmp_tf.errors import DataError

_ERROR_MARK = "cmp_tf-data-error<<"
_ERROR_END = ">>"
_ERROR_RE = re.compile(re.escape(_ERROR_MARK) + r"(.*?)" + re.escape(_ERROR_END), re.S)


def import_beam():
  """apache_beam, imported with its start-up chatter kept out of the user's terminal."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by worker processes
  root = logging.getLogger()
  level = root.level
  root.setLevel(logging.ERROR)  # Beam warns at import about cloud clients it does not need
  try:
    import apache_beam as beam
  finally:
    root.setLevel(level)
  for name in ("apache_beam", "apache_beam.runners", "apache_beam.internal"):
    logging.getLogger(name).setLevel(logging.ERROR)
  return beam


def beam_options_list(text, flag="--beam_options"):
  """The Beam options in `text` (shell words, each starting with --); ValueError naming
  `flag` otherwise."""
  try:
    words = shlex.split(text or "")
  except ValueError as e:
    raise ValueError(f"{flag}: cannot split {text!r} into options ({e})") from None
  bad = [w for w in words if not w.startswith("--")]
  if bad:
    raise ValueError(f"{flag}: expected Beam pipeline options such as --runner=FlinkRunner, "
                     f"got {' '.join(bad)!r}")
  return words


def _runner_named(words):
  for i, word in enumerate(words):
    if word.startswith("--runner="):
      return word.split("=", 1)[1]
    if word == "--runner" and i + 1 < len(words):
      return words[i + 1]
  return None


def local_workers(workers):
  """Worker processes of the local runner for `workers` (0: one per core)."""
  return int(workers) if workers else (os.cpu_count() or 1)


def pipeline_options(workers, beam_options=""):
  """PipelineOptions for `workers` local processes, or the runner `beam_options` names."""
  import_beam()
  from apache_beam.options.pipeline_options import PipelineOptions
  words = beam_options_list(beam_options)
  if _runner_named(words) not in (None, "DirectRunner"):
    return PipelineOptions(words)
  n = local_workers(workers)
  mode = "in_memory" if n == 1 else "multi_processing"
  return PipelineOptions(words, runner="DirectRunner", direct_num_workers=n,
                         direct_running_mode=mode)


def describe_runner(workers, beam_options=""):
  """What ran a pipeline, for manifests and indexes: {"runner", "workers"}."""
  words = beam_options_list(beam_options)
  runner = _runner_named(words)
  if runner not in (None, "DirectRunner"):
    return {"runner": runner, "options": words}
  return {"runner": "DirectRunner", "workers": local_workers(workers)}


def runner_text(runner):
  """One line for progress messages."""
  if "workers" in runner:
    n = runner["workers"]
    return f"Beam {runner['runner']}, {n} worker{'s' if n != 1 else ''}"
  return f"Beam {runner['runner']}"


def data_error_text(error):
  """The text a worker raises for a DataError, so the driver can raise it again."""
  return _ERROR_MARK + json.dumps({"message": error.args[0], "path": error.path,
                                   "line": error.line, "record": error.record}) + _ERROR_END


def carrying_data_errors(fn):
  """`fn` (a worker-side callable) with its DataErrors raised as text that crosses process
  boundaries; `run` turns it back into the DataError."""
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except DataError as e:
      raise RuntimeError(data_error_text(e)) from None
  wrapped.__name__ = getattr(fn, "__name__", "wrapped")
  wrapped.__doc__ = fn.__doc__
  return wrapped


def run(add_transforms, options):
  """Builds a pipeline with `add_transforms(pipeline)` and runs it to the end under
  `options`; a DataError raised in a worker is raised here again."""
  beam = import_beam()
  try:
    with beam.Pipeline(options=options) as pipeline:
      add_transforms(pipeline)
  except Exception as e:  # noqa: BLE001 - runners wrap worker errors in their own types
    found = _ERROR_RE.search(str(e))
    if found is None:
      raise
    fields = json.loads(found.group(1))
    error = DataError(fields["message"])  # the message already names the place
    error.path, error.line, error.record = fields["path"], fields["line"], fields["record"]
    raise error from None
