"""The shipped zero-shot split of the default SynthCMP categories.

As in the paper (55 of 205 Places categories held out of the non-NAT training sets), the
same fraction of the default categories is held out. The list was drawn once at random
with a fixed seed and is shipped, so it never changes with code.
"""

from cmp_tf import paths
from cmp_tf.errors import DataError

HELDOUT_FILE = "zeroshot_heldout_synthcmp.txt"


def default_heldout_categories(grammar, path=None):
  """Held-out category names, in file order; each must be a category of `grammar`."""
  path = path or paths.shipped(HELDOUT_FILE)
  names = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      name = line.split("#", 1)[0].strip()
      if not name:
        continue
      if name not in grammar.categories:
        raise DataError(f"{name!r} is not a category of the scene grammar {grammar.path}",
                        path=path, line=line_no)
      if name in names:
        raise DataError(f"{name!r} is listed twice", path=path, line=line_no)
      names.append(name)
  if not names:
    raise DataError("no held-out category listed", path=path)
  return names
