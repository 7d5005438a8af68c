"""Your own data: a root with one folder per modality and one per category inside it.

  ROOT/<modality>/<category>/<file>     e.g. ROOT/ldr/kitchen/0001.png, ROOT/dsc/bar/17.txt

Images (any format Pillow reads) for the visual modalities, one UTF-8 `.txt` file per
description for DSC. The categories are the category folders' names, sorted (the label of
each is its place in that order, recorded in the manifest); any subset of the five
modalities (--modalities). Nothing is paired: each modality is read on its own. Per
modality and category, a seeded choice of --val_per_category files becomes the validation
split (at least one file stays for training); the dev split is carved out of the rest as
for every source. Every file is checked before anything is decoded; an unusable one
stops the build naming it, or with --skip_bad is left out and counted.
"""

import os

from cmp_tf import modalities as mod_lib
from cmp_tf.data import cmplaces
from cmp_tf.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
WRONG_KIND = "wrong_kind"  # a file of another kind than its modality's (skip reason)


def _visible(directory):
  return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def check_root(root, modalities):
  """The absolute root; ValueError naming --folders_root when a modality's folder is
  missing."""
  if not root or not os.path.isdir(root):
    raise ValueError(f"--folders_root: {root!r} does not exist or is not a directory")
  root = os.path.abspath(root)
  missing = [m for m in modalities if not os.path.isdir(os.path.join(root, m))]
  if missing:
    present = [m for m in mod_lib.ALL_MODALITIES if os.path.isdir(os.path.join(root, m))]
    raise ValueError(f"--folders_root: {root} has no folder for {', '.join(missing)} "
                     f"(--modalities asks for it); it holds {', '.join(present) or 'none'}: "
                     f"pass --modalities={','.join(present)} to build only those")
  return root


def read_categories(root, modalities):
  """The sorted category folder names found under any modality's folder."""
  names = set()
  for modality in modalities:
    folder = os.path.join(root, modality)
    for name in _visible(folder):
      path = os.path.join(folder, name)
      if not os.path.isdir(path):
        raise DataError(f"expected only category folders in {folder}, found the file "
                        f"{name}", path=path)
      names.add(name)
  if not names:
    raise DataError("no category folders under any modality folder", path=root)
  return sorted(names)


def scan_modality(root, modality, categories, *, skip_bad):
  """(entries, skipped) of one modality: every file checked, in category then name order;
  `skipped` counts the files left out by reason (with `skip_bad`)."""
  suffixes = IMAGE_SUFFIXES if mod_lib.is_image(modality) else TEXT_SUFFIXES
  folder = os.path.join(root, modality)
  entries, skipped = [], {}
  for label, category in enumerate(categories):
    directory = os.path.join(folder, category)
    if not os.path.isdir(directory):
      continue
    for name in _visible(directory):
      path = os.path.join(directory, name)
      if os.path.isdir(path):
        problem = (WRONG_KIND, f"{path} is a folder; expected {modality} files only")
      elif not name.lower().endswith(suffixes):
        problem = (WRONG_KIND, f"{path} is not a {modality} file (expected "
                   f"{', '.join(suffixes)})")
      else:
        problem = cmplaces.check_file(modality, path, True)
      if problem is None:
        entries.append(cmplaces.Entry(path=path, relpath=f"{category}/{name}", label=label,
                                      line=None))
      elif skip_bad:
        skipped[problem[0]] = skipped.get(problem[0], 0) + 1
      else:
        raise DataError(problem[1] + " (--skip_bad leaves such files out)", path=path)
  if not entries:
    raise DataError(f"no usable {modality} files in any category folder", path=folder)
  return entries, skipped
