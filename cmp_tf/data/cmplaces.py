"""Reads the real CMPlaces dataset, laid out as published, into ExampleRecords.

  ROOT/labels/categories.txt       "name index" per line ("/a/abbey 0" or "abbey 0")
  ROOT/labels/<name>_<split>.txt   "relative/path label" per line, for clp, spt, ldr, dsc
                                   (images, or one UTF-8 text file per description) and
                                   nat (Places205 images); split is train or val ("test"
                                   is read when no "val" file exists)

<name> is the modality's abbreviation or one of the names of LABEL_FILE_NAMES: the
published starter kit lists descriptions in labels/text_train.txt and text_val.txt,
with entries "data/text/<letter>/<category>/<file> <label>". Listed paths are resolved
against ROOT, then against a second files root when the kit's data/ lives elsewhere.

Natural images may instead come from Places205's own split files
(train_places205.csv / val_places205.csv, "path label" per line) with their
images root: pass `label_file` and `images_root` (and `categories`, to check each
line's label against the category directory its path names).

Two passes, so that bad input is found before expensive work: `scan` parses every
label line and checks that the label is in range, the file exists, an image's
header is readable and a description has a sentence; `iter_records` then decodes
the images. Without `skip_bad` the first problem raises DataError naming the label
file and line; with it the entry is left out and counted by reason.
"""

import dataclasses
import io
import os
import struct

import numpy as np
from PIL import Image, ImageOps

from cmp_tf import modalities as mod_lib
from cmp_tf.data.features import ExampleRecord
from cmp_tf.errors import DataError
from cmp_tf.text.split import split_sentences

LABELS_DIR = "labels"
CATEGORIES_FILE = os.path.join(LABELS_DIR, "categories.txt")

# Reasons an entry is skipped (keys of ScanResult.skipped and of the manifest's "skipped").
BAD_LINE = "bad_line"
LABEL_OUT_OF_RANGE = "label_out_of_range"
MISSING_FILE = "missing_file"
DUPLICATE_ENTRY = "duplicate_entry"
UNDECODABLE_IMAGE = "undecodable_image"
BAD_TEXT = "bad_text"
EMPTY_DESCRIPTION = "empty_description"
CATEGORY_MISMATCH = "category_mismatch"

# What PIL raises on a file that is not an image it can decode, or is truncated.
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error,
                 Image.DecompressionBombError)


@dataclasses.dataclass(frozen=True)
class Entry:
  """One good line of a label file."""
  path: str  # the file, resolved
  relpath: str  # the path as listed
  label: int
  line: int


@dataclasses.dataclass
class ScanResult:
  """The good entries of one label file, and how many were skipped, by reason."""
  modality: str
  split: str
  label_file: str
  entries: list = dataclasses.field(default_factory=list)
  skipped: dict = dataclasses.field(default_factory=dict)

  @property
  def count(self):
    return len(self.entries)


def check_root(root):
  """The dataset root as a str; DataError if it is not a directory."""
  root = os.path.abspath(os.path.expanduser(str(root)))
  if not os.path.isdir(root):
    raise DataError("CMPlaces dataset root does not exist or is not a directory", path=root)
  return root


def normalize_category_name(name):
  """'/a/abbey' or 'a/abbey' -> 'abbey'; '/d/desert/sand' -> 'desert/sand'."""
  parts = [p for p in name.strip().split("/") if p]
  if len(parts) >= 2 and len(parts[0]) == 1:
    parts = parts[1:]
  return "/".join(parts)


def _decoded_lines(path):
  """Yields (line number, text) of a UTF-8 file; DataError on bytes that are not UTF-8."""
  try:
    with open(path, "rb") as f:
      for number, raw in enumerate(f, 1):
        try:
          text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise DataError(f"not UTF-8 text ({e.reason})", path=path, line=number) from e
        yield number, text.lstrip("\ufeff") if number == 1 else text
  except FileNotFoundError as e:
    raise DataError("file does not exist", path=path) from e


def read_categories(path):
  """Category names in index order; indices come from the file, never from sorting.

  Every non-blank line is "name index". A malformed line, a repeated name or
  index, or a gap in the indices raises DataError naming the file (and line).
  """
  path = str(path)
  by_index, name_lines, index_lines = {}, {}, {}
  for number, text in _decoded_lines(path):
    if not text.strip():
      continue
    fields = text.strip().rsplit(None, 1)
    if len(fields) != 2:
      raise DataError(f"expected 'name index', got {text.strip()!r}", path=path, line=number)
    name = normalize_category_name(fields[0])
    try:
      index = int(fields[1])
    except ValueError:
      raise DataError(f"category index {fields[1]!r} is not an integer",
                      path=path, line=number) from None
    if not name:
      raise DataError(f"empty category name in {text.strip()!r}", path=path, line=number)
    if index < 0:
      raise DataError(f"negative category index {index}", path=path, line=number)
    if name in name_lines:
      raise DataError(f"category {name!r} is listed twice (first on line {name_lines[name]})",
                      path=path, line=number)
    if index in index_lines:
      raise DataError(f"category index {index} is used twice (first on line "
                      f"{index_lines[index]})", path=path, line=number)
    by_index[index], name_lines[name], index_lines[index] = name, number, number
  if not by_index:
    raise DataError("no categories listed", path=path)
  missing = sorted(set(range(len(by_index))) - set(by_index))
  if missing:
    raise DataError(f"category indices must be 0..{len(by_index) - 1} without gaps; missing "
                    f"{', '.join(map(str, missing[:10]))}", path=path)
  return [by_index[i] for i in range(len(by_index))]


def load_categories(root):
  """Checks the dataset root and reads ROOT/labels/categories.txt."""
  return read_categories(os.path.join(check_root(root), CATEGORIES_FILE))


def _check_split(split):
  if split not in mod_lib.SPLITS:
    raise ValueError(f"split must be one of {', '.join(mod_lib.SPLITS)}, got {split!r}")
  return split


# The names a modality's label files may have, tried in this order: our abbreviation, the
# published starter kit's ("text" for descriptions), then natural spellings.
LABEL_FILE_NAMES = {
    mod_lib.NAT: ("nat", "natural", "places"),
    mod_lib.CLP: ("clp", "clipart", "clip_art"),
    mod_lib.SPT: ("spt", "spatialtext", "spatial_text"),
    mod_lib.LDR: ("ldr", "linedrawing", "linedrawings", "line_drawing", "line_drawings",
                  "sketch", "sketches"),
    mod_lib.DSC: ("dsc", "text", "description", "descriptions"),
}
_SPLIT_FILE_NAMES = {"train": ("train",), "val": ("val", "test")}


def label_file_candidates(root, modality, split):
  """Every ROOT/labels/<name>_<split>.txt tried for one modality and split, in order."""
  modality = mod_lib.parse_modality(modality)
  if _check_split(split) not in _SPLIT_FILE_NAMES:
    raise ValueError(f"CMPlaces label files have no {split!r} split (dev is carved from train)")
  return [os.path.join(str(root), LABELS_DIR, f"{name}_{split_name}.txt")
          for split_name in _SPLIT_FILE_NAMES[split] for name in LABEL_FILE_NAMES[modality]]


def label_file_path(root, modality, split):
  """The first existing label file of `label_file_candidates`; DataError naming every name
  tried when there is none."""
  candidates = label_file_candidates(root, modality, split)
  for path in candidates:
    if os.path.isfile(path):
      return path
  names = ", ".join(os.path.basename(p) for p in candidates)
  raise DataError(f"no label file for {modality}/{split}: tried {names} (give one with "
                  f"--cmplaces_label_files={modality}=TRAIN_FILE:VAL_FILE, or leave "
                  f"{modality} out with --modalities)",
                  path=os.path.join(str(root), LABELS_DIR))


def parse_label_file_overrides(text):
  """'MOD=TRAIN_FILE:VAL_FILE,...' -> {modality: (train file, val file)}; ValueError naming
  the flag on a malformed entry."""
  out = {}
  for item in [i.strip() for i in str(text or "").split(",") if i.strip()]:
    name, sep, files = item.partition("=")
    train, sep2, val = files.partition(":")
    if not sep or not sep2 or not train.strip() or not val.strip():
      raise ValueError(f"--cmplaces_label_files: expected MOD=TRAIN_FILE:VAL_FILE, got {item!r}")
    try:
      modality = mod_lib.parse_modality(name.strip())
    except ValueError as e:
      raise ValueError(f"--cmplaces_label_files: {e}") from None
    if modality in out:
      raise ValueError(f"--cmplaces_label_files: {modality} is given twice")
    out[modality] = (train.strip(), val.strip())
  return out


def category_of_path(relpath, categories):
  """The category a listed path's directory names ('a/abbey/0001.jpg' -> 'abbey'), when it
  is one of `categories`; else None (the path says nothing about its category)."""
  directory = os.path.dirname(relpath.replace(os.sep, "/").lstrip("/"))
  name = normalize_category_name(directory)
  return name if name in set(categories) else None


def _parse_label_line(text):
  """'relative/path label' (or 'path,label') -> (path, label str), or None."""
  fields = text.strip().rsplit(None, 1)
  if len(fields) == 1 and "," in fields[0]:
    fields = fields[0].rsplit(",", 1)
  if len(fields) != 2:
    return None
  relpath = fields[0].strip().rstrip(",").strip()
  return (relpath, fields[1].strip()) if relpath else None


def _resolve(files_root, relpath):
  """Paths are relative to `files_root`; an absolute path is used as is if it exists."""
  if os.path.isabs(relpath) and os.path.exists(relpath):
    return os.path.normpath(relpath)
  return os.path.normpath(os.path.join(files_root, relpath.lstrip("/")))


def read_description(path):
  """The UTF-8 text of one description file, stripped (a BOM is dropped)."""
  with open(path, "rb") as f:
    return f.read().decode("utf-8").lstrip("\ufeff").strip()


def check_file(modality, path, check_images):
  """(reason, message) when the file is unusable, else None."""
  if not os.path.isfile(path):
    return MISSING_FILE, f"listed file {path} does not exist"
  if mod_lib.is_image(modality):
    if check_images:
      try:
        with Image.open(path) as image:
          image.size  # noqa: B018 (identifying the format reads the header)
      except _IMAGE_ERRORS as e:
        return UNDECODABLE_IMAGE, f"cannot decode image {path}: {e}"
    return None
  try:
    text = read_description(path)
  except UnicodeDecodeError as e:
    return BAD_TEXT, f"description {path} is not UTF-8 text ({e.reason})"
  if not split_sentences(text):
    return EMPTY_DESCRIPTION, f"description {path} is empty (no sentence)"
  return None


def _count(skipped, reason, n=1):
  skipped[reason] = skipped.get(reason, 0) + n


def scan(root, modality, split, num_categories, *, skip_bad=False, label_file=None,
         images_root=None, files_root=None, categories=None, check_images=True):
  """Checks one label file and every file it lists, cheaply, before any decoding.

  Args:
    root: the CMPlaces root (holding labels/).
    modality, split: e.g. "ldr", "train".
    num_categories: labels must be in [0, num_categories).
    skip_bad: leave bad entries out and count them, instead of raising DataError.
    label_file: a label file to read instead of ROOT/labels/<modality>_<split>.txt
      (e.g. Places205's train_places205.csv for nat).
    images_root: the directory listed paths are relative to (default: root).
    files_root: a second directory a listed path is looked for in when it is not under
      the first (the starter kit's data/ kept elsewhere).
    categories: the category names in label order; given, a line whose path names the
      directory of another category than its label's is an error (Places205's CSVs).
    check_images: open each image's header (cheap, catches files that are not images).
  Returns:
    ScanResult with the good entries in file order and the skipped counts.
  """
  root = check_root(root)
  modality = mod_lib.parse_modality(modality)
  _check_split(split)
  if num_categories < 1:
    raise ValueError(f"num_categories must be positive, got {num_categories}")
  label_file = os.path.abspath(str(label_file) if label_file else
                               label_file_path(root, modality, split))
  if not os.path.isfile(label_file):
    raise DataError(f"label file for {modality}/{split} does not exist", path=label_file)
  roots = [root]
  if images_root is not None:
    roots = [os.path.abspath(str(images_root))]
    if not os.path.isdir(roots[0]):
      raise DataError("images root does not exist or is not a directory", path=roots[0])
  if files_root:
    roots.append(os.path.abspath(str(files_root)))
    if not os.path.isdir(roots[-1]):
      raise DataError("files root does not exist or is not a directory", path=roots[-1])

  result = ScanResult(modality=modality, split=split, label_file=label_file)
  first_line = {}  # resolved path -> the line that listed it first
  for number, text in _decoded_lines(label_file):
    if not text.strip():
      continue
    entry, problem = _check_entry(text, number, modality, num_categories, roots,
                                  first_line, check_images, categories)
    if problem is None:
      result.entries.append(entry)
    elif skip_bad and problem[0] != CATEGORY_MISMATCH:  # a wrong category file is never skipped
      _count(result.skipped, problem[0])
    else:
      raise DataError(problem[1], path=label_file, line=number)
  return result


def _check_entry(text, number, modality, num_categories, roots, first_line, check_images,
                 categories=None):
  """(Entry, None) for a good label line, else (None, (reason, message))."""
  parsed = _parse_label_line(text)
  if parsed is None:
    return None, (BAD_LINE, f"expected 'relative/path label', got {text.strip()!r}")
  relpath, label_text = parsed
  try:
    label = int(label_text)
  except ValueError:
    return None, (BAD_LINE, f"label {label_text!r} is not an integer")
  if not 0 <= label < num_categories:
    return None, (LABEL_OUT_OF_RANGE,
                  f"label {label} is out of range [0, {num_categories}) for {relpath}")
  if categories is not None:
    named = category_of_path(relpath, categories)
    if named is not None and named != categories[label]:
      return None, (CATEGORY_MISMATCH,
                    f"label {label} is {categories[label]!r} in {CATEGORIES_FILE}, but the "
                    f"path {relpath} is in the directory of {named!r} (label "
                    f"{list(categories).index(named)} there): the split file and the "
                    "category file disagree")
  candidates = [_resolve(r, relpath) for r in roots]
  path = next((c for c in candidates if os.path.exists(c)), candidates[0])
  if len(candidates) > 1 and not os.path.exists(path):
    return None, (MISSING_FILE, f"listed file {relpath} does not exist: tried "
                  + " and ".join(candidates))
  if path in first_line:
    return None, (DUPLICATE_ENTRY, f"{relpath} is listed again (first on line {first_line[path]})")
  first_line[path] = number
  problem = check_file(modality, path, check_images)
  if problem is not None:
    return None, problem
  return Entry(path=path, relpath=relpath, label=label, line=number), None


def image_to_png(path, image_size):
  """Any image file -> PNG bytes of an RGB image_size x image_size image.

  Plain resize (no crop): the whole scene is kept, as line drawings and clip
  art reach the borders and Places205 images are square already; training's
  decode_image squashes the same way. Transparent pixels become white (clip art
  and sketches are drawn on white); EXIF orientation is applied.
  """
  with Image.open(path) as image:
    image = ImageOps.exif_transpose(image)
    image.load()
  if image.mode.startswith("I;16") or image.mode == "I":
    image = Image.fromarray((np.asarray(image, np.int64).clip(0, 65535) >> 8).astype(np.uint8))
  if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
    rgba = image.convert("RGBA")
    image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    image.alpha_composite(rgba)
  image = image.convert("RGB")
  if image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", compress_level=3)  # twice as fast as 6, ~6% larger
  return buffer.getvalue()


def iter_records(root, modality, split, categories, image_size, *, skip_bad=False, skipped=None,
                 scan_result=None, label_file=None, images_root=None):
  """ExampleRecords of one modality and split, in label-file order.

  Scans first (or takes `scan_result`, from `scan` with the same arguments), so
  bad label lines raise here, before anything is decoded; the returned iterator
  then decodes images (DataError naming the image and the label-file line, or
  skipped with `skip_bad`) and reads descriptions (vector=None: the build embeds
  them with the sentence encoder). Object lists are empty: CMPlaces has none.

  `skipped`, a dict, receives counts by reason of every entry left out — the
  scan's and those that fail to decode; it is complete once the iterator is done.
  """
  modality = mod_lib.parse_modality(modality)
  categories = list(categories)
  if mod_lib.is_image(modality) and (not isinstance(image_size, int) or image_size < 1):
    raise ValueError(f"image_size must be a positive int, got {image_size!r}")
  if scan_result is None:
    scan_result = scan(root, modality, split, len(categories), skip_bad=skip_bad,
                       label_file=label_file, images_root=images_root)
  elif (scan_result.modality, scan_result.split) != (modality, split):
    raise ValueError(f"scan_result is for {scan_result.modality}/{scan_result.split}, "
                     f"not {modality}/{split}")
  out_of_range = [e for e in scan_result.entries if e.label >= len(categories)]
  if out_of_range:
    raise DataError(f"label {out_of_range[0].label} is out of range for "
                    f"{len(categories)} categories", path=scan_result.label_file,
                    line=out_of_range[0].line)
  skipped = {} if skipped is None else skipped
  for reason, n in scan_result.skipped.items():
    _count(skipped, reason, n)
  return _generate(scan_result, categories, image_size, skip_bad, skipped)


def _generate(scan_result, categories, image_size, skip_bad, skipped):
  for entry in scan_result.entries:
    record, reason = read_entry(entry, scan_result.modality, scan_result.split, categories,
                                image_size, label_file=scan_result.label_file,
                                skip_bad=skip_bad)
    if record is None:
      _count(skipped, reason)
      continue
    yield record


def read_entry(entry, modality, split, categories, image_size, *, label_file, skip_bad):
  """(ExampleRecord, None) of one label-file entry, or (None, the reason it was skipped)
  with `skip_bad`; without it, a file that cannot be read raises DataError naming
  `label_file` and the entry's line."""
  record = ExampleRecord(
      modality=modality,
      label=entry.label,
      category=categories[entry.label],
      example_id=f"{modality}/{split}/{entry.relpath.lstrip('/')}")
  if mod_lib.is_image(modality):
    try:
      record.image_png = image_to_png(entry.path, image_size)
    except _IMAGE_ERRORS as e:
      if not skip_bad:
        raise DataError(f"cannot decode image {entry.path}: {e}", path=label_file,
                        line=entry.line) from e
      return None, MISSING_FILE if isinstance(e, FileNotFoundError) else UNDECODABLE_IMAGE
  else:
    try:
      record.text = read_description(entry.path)
    except (OSError, UnicodeDecodeError) as e:
      if not skip_bad:
        raise DataError(f"cannot read description {entry.path}: {e}", path=label_file,
                        line=entry.line) from e
      return None, MISSING_FILE if isinstance(e, FileNotFoundError) else BAD_TEXT
  return record, None
