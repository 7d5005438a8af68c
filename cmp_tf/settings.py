"""Settings as dataclass fields that carry their help text, so that one declaration gives
the default, the flag and its help (`cmp_tf.cli.define_flags`). No absl, no TensorFlow."""

import dataclasses


def setting(default, help_text, choices=None):
  """A dataclass field with `help_text` (and allowed `choices`) in its metadata."""
  meta = {"help": help_text}
  if choices is not None:
    meta["choices"] = tuple(choices)
  if isinstance(default, (list, tuple)):
    kind = type(default)
    return dataclasses.field(default_factory=lambda: kind(default), metadata=meta)
  return dataclasses.field(default=default, metadata=meta)


def fields_of(cls):
  """(name, default, help, choices) of every field of dataclass `cls`, in order."""
  out = []
  for f in dataclasses.fields(cls):
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    out.append((f.name, default, f.metadata["help"], f.metadata.get("choices")))
  return out
