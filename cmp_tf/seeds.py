"""Seeds derived from a run's seed, so that every random choice is a pure function of it."""

import hashlib


def derive_seed(*parts):
  """A stable 31-bit seed from `parts` (the same on every machine and Python run)."""
  digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
  return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
