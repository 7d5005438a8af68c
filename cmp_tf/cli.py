"""The error boundary of every command, and flags made from settings dataclasses.

A known fault becomes one paragraph naming what was wrong and where, and exit status 2,
not a traceback. Known faults: bad flags, bad settings and inputs (ValueError:
ConfigError, RunError, DataError ...), I/O and permission errors (OSError, a held lock
included) and TensorFlow's own errors (a lost worker, a damaged file). Anything else is a
bug and keeps its traceback, and so does everything with --verbosity=1 or more.

Commands define one flag per field of their settings dataclass (`define_flags`), read
them back into it (`config_from_flags`), and read a flagfile of such flags without
touching the command's own (`config_from_flagfile`: how `cmp_tf.train` reads
`--data_config`). Library packages take the dataclass, never flags.
"""

import dataclasses
import sys

from absl import app, flags

from cmp_tf import memory, settings


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
  """app.run(main) inside the boundary; `command` (e.g. "cmp_tf.export") starts messages.
  Freed memory stays in the process first (`cmp_tf.memory`), for every command alike."""
  memory.keep_freed_memory()

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      print(f"{command}: error: {e}", file=sys.stderr, flush=True)
      sys.exit(2)

  def guarded(argv):
    try:
      return main(argv)
    except _known_faults() as e:
      if _verbose():
        raise
      message = " ".join(str(e).split()) or type(e).__name__
      print(f"{command}: error: {message}", file=sys.stderr, flush=True)
      return 2

  app.run(guarded, flags_parser=parse)


def define_flags(cls, flag_values=flags.FLAGS):
  """Defines one flag per field of dataclass `cls` (`cmp_tf.settings.setting` fields) on
  `flag_values`; returns it."""
  for name, default, help_text, choices in settings.fields_of(cls):
    kwargs = {"flag_values": flag_values}
    if choices is not None:
      flags.DEFINE_enum(name, default, list(choices), help_text, **kwargs)
    elif isinstance(default, bool):
      flags.DEFINE_boolean(name, default, help_text, **kwargs)
    elif isinstance(default, int):
      flags.DEFINE_integer(name, default, help_text, **kwargs)
    elif isinstance(default, float):
      flags.DEFINE_float(name, default, help_text, **kwargs)
    elif isinstance(default, (list, tuple)):
      flags.DEFINE_list(name, list(default), help_text, **kwargs)
    else:
      flags.DEFINE_string(name, default, help_text, **kwargs)
  return flag_values


def config_from_flags(cls, flag_values=flags.FLAGS):
  """An instance of dataclass `cls` holding the parsed flags' values (not validated)."""
  return cls(**{f.name: flag_values[f.name].value for f in dataclasses.fields(cls)})


def config_from_flagfile(cls, flagfile, **overrides):
  """An instance of `cls` from a flagfile of its flags (parsed apart from the command's
  own flags), with field `overrides` (not validated)."""
  flag_values = define_flags(cls, flags.FlagValues())
  try:
    flag_values(["cmp_tf", f"--flagfile={flagfile}"])
  except flags.Error as e:
    raise ValueError(f"{flagfile}: {e}") from None
  return dataclasses.replace(config_from_flags(cls, flag_values), **overrides)
