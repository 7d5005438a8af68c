"""The photos a search index is built from: a dataset split, TFRecords or a folder of images.

Every source yields Photo(id, category, encoded bytes, where); `where` names the
file (and record) for error messages. A photo's category is known for records and
for folders laid out as <root>/<category>/<file>; otherwise it is "". A source is cut
into units (a TFRecord file, or up to `FILES_PER_UNIT` image files) that workers embed
independently (`cmp_tf.serving.photo_pipeline`); the units' order is the index's order.
"""

import dataclasses
import glob
import io
import os

from PIL import Image, UnidentifiedImageError

from cmp_tf import modalities as mod_lib
from cmp_tf.data import features
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords")
FILES_PER_UNIT = 256


@dataclasses.dataclass(frozen=True)
class Unit:
  """Photos one worker call embeds: one TFRecord file, or image files under a root."""
  tfrecord: str = ""
  modality: str = ""  # tfrecord: keep only records of this modality ("": all)
  files: tuple = ()  # image files
  root: str = ""  # files: ids are relative to it, its top folders name categories
  categories: tuple = ()


def unit_photos(unit):
  """The photos of `unit`, in order."""
  if unit.tfrecord:
    return tfrecord_photos([unit.tfrecord], modality=unit.modality or None)
  return file_photos(unit.files, unit.root, unit.categories)


@dataclasses.dataclass(frozen=True)
class Photo:
  id: str
  category: str
  encoded: bytes
  where: str


def _feature_bytes(example, key):
  values = example.features.feature[key].bytes_list.value
  return values[0] if values else b""


def tfrecord_photos(paths, modality=None):
  """Image records of `paths` (cmp_tf's record format); DSC records are an error.

  With `modality`, records of other modalities are skipped.
  """
  import tensorflow as tf

  from cmp_tf.data import tfrecord_io

  for path in paths:
    for index, serialized in tfrecord_io.iter_serialized(path):
      try:
        example = tf.train.Example.FromString(serialized)
      except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise DataError(f"record is not a tf.train.Example ({e})", path=path,
                        record=index) from None
      record_modality = _feature_bytes(example, features.MODALITY).decode()
      if modality is not None and record_modality != modality:
        continue
      encoded = _feature_bytes(example, features.IMAGE)
      if not encoded:
        raise DataError(f"record of modality {record_modality!r} has no image; index "
                        "photos (NAT records) or image files", path=path, record=index)
      yield Photo(id=_feature_bytes(example, features.EXAMPLE_ID).decode("utf-8")
                  or f"{os.path.basename(path)}:{index}",
                  category=_feature_bytes(example, features.CATEGORY).decode("utf-8"),
                  encoded=encoded, where=f"{path}, record {index}")


def _dataset_units(data_dir, split, modality=mod_lib.NAT):
  """One unit per shard of one split of a built dataset, in written order."""
  manifest = manifest_lib.read_manifest(data_dir)
  return [Unit(tfrecord=path, modality=modality)
          for path in manifest_lib.shard_paths(manifest, data_dir, modality, split)]


def file_photos(paths, root, categories=()):
  """Photos of the image files `paths`: ids relative to `root`, whose top folder names a
  category when it is one of `categories`."""
  known = set(categories)
  for path in paths:
    relative = os.path.relpath(path, root)
    top = relative.split(os.sep)[0] if os.sep in relative else ""
    with open(path, "rb") as f:
      encoded = f.read()
    yield Photo(id=relative, category=top if top in known else "", encoded=encoded, where=path)


def _directory_units(root, categories):
  """Image files under `root` (recursively, sorted) in units of FILES_PER_UNIT."""
  found = []
  for directory, subdirs, names in os.walk(root):
    subdirs.sort()
    for name in sorted(names):
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.join(directory, name))
  return [Unit(files=tuple(found[i:i + FILES_PER_UNIT]), root=root,
               categories=tuple(categories)) for i in range(0, len(found), FILES_PER_UNIT)]


def source_units(images, *, data_dir, split, categories):
  """(description, [Unit]) for the --images flag (None: the run's dataset split)."""
  if not images:
    return (f"NAT {split} split of {data_dir}", _dataset_units(data_dir, split))
  path = os.path.abspath(os.path.expanduser(images))
  if os.path.isfile(os.path.join(path, manifest_lib.MANIFEST_NAME)):
    return f"NAT {split} split of {path}", _dataset_units(path, split)
  if glob.has_magic(images):
    matches = sorted(glob.glob(os.path.expanduser(images)))
    if not matches:
      raise ValueError(f"--images: no file matches {images}")
    return (f"{len(matches)} TFRecord file(s) {images}",
            [Unit(tfrecord=m) for m in matches])
  if os.path.isfile(path):
    if path.lower().endswith(TFRECORD_EXTENSIONS):
      return f"TFRecord file {path}", [Unit(tfrecord=path)]
    if path.lower().endswith(IMAGE_EXTENSIONS):
      return f"image {path}", [Unit(files=(path,), root=os.path.dirname(path))]
    raise ValueError(f"--images: {path} is neither a TFRecord nor an image "
                     f"({', '.join(IMAGE_EXTENSIONS + TFRECORD_EXTENSIONS)})")
  if os.path.isdir(path):
    shards = sorted(glob.glob(os.path.join(path, "**", "*.tfrecord*"), recursive=True))
    if shards:
      return (f"{len(shards)} TFRecord file(s) under {path}",
              [Unit(tfrecord=s) for s in shards])
    return f"image files under {path}", _directory_units(path, categories)
  raise ValueError(f"--images: {path} does not exist")


def thumbnail_png(photo, size):
  """A PNG thumbnail (longest side `size`) of a photo; an unreadable image is a DataError."""
  try:
    with Image.open(io.BytesIO(photo.encoded)) as image:
      image = image.convert("RGB")
      image.thumbnail((size, size))
  except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"not a readable image ({e})", path=photo.where) from None
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", optimize=True)
  return buffer.getvalue()
