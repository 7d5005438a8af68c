"""The dataset build's Beam pipeline: render or decode every example, write sorted shards.

Every split of the plan is cut into work units. An image split's unit is one shard: the
worker renders (SynthCMP) or decodes (CMPlaces, folders) the examples at positions
s, s+n, s+2n, ... of the split and writes shard s itself, so image bytes never pass
through a shuffle. A description split's unit is a run of `ENCODE_CHUNK` consecutive
examples, embedded in one call (the sentence encoder's output depends on its batch, so
the chunks are part of what makes the build reproducible); its records are grouped by
shard and each shard is written sorted by position. Beside every shard the worker leaves
a summary (count, label counts, skipped entries, bytes, digest) from which the manifest
is made: its numbers are those of what was written. Record i of a split lands in shard
i % n whatever the runner or the number of workers, so the bytes are the same.
"""

import dataclasses
import os

import numpy as np

from cmp_tf import fileio, pipelines
from cmp_tf import modalities as mod_lib
from cmp_tf.data import tfrecord_io
from cmp_tf.errors import DataError

ENCODE_CHUNK = 256  # descriptions embedded per call (fixed: part of the determinism)
SIZE_PROBE = 16  # records serialised up front to choose the shard count
SUMMARY_SUFFIX = ".summary.json"


@dataclasses.dataclass(frozen=True)
class Split:
  """One modality's split: its items (render tasks or file entries) in write order."""
  modality: str
  split: str
  items: tuple
  num_shards: int


@dataclasses.dataclass(frozen=True)
class Unit:
  """Positions of one split that one worker call handles."""
  modality: str
  split: str
  num_shards: int
  positions: tuple
  items: tuple
  shard: int = -1  # the shard this unit writes whole (image splits); -1: grouped later


@dataclasses.dataclass(frozen=True)
class Source:
  """What a worker needs to make a record from an item (picklable, loaded once)."""
  config: object  # BuildConfig
  categories: tuple  # label space of the items (CMPlaces: all of the kit's categories)
  relabel: tuple  # ((item label, dataset label), ...); empty: the same
  label_files: tuple  # (((modality, split), label file), ...) for CMPlaces error messages
  vector_dim: int


def work_units(split):
  """The units covering every position of `split` once."""
  total, n = len(split.items), split.num_shards
  if split.modality == mod_lib.DSC:
    return [Unit(split.modality, split.split, n, tuple(range(start, min(start + ENCODE_CHUNK,
                                                                         total))),
                 tuple(split.items[start:start + ENCODE_CHUNK]))
            for start in range(0, total, ENCODE_CHUNK)]
  return [Unit(split.modality, split.split, n, tuple(range(s, total, n)),
               tuple(split.items[s::n]), shard=s) for s in range(n)]


class Renderer:
  """Makes ExampleRecords from items; the grammar and the encoder load once per worker."""

  def __init__(self, source):
    self.source = source
    self._grammar = None
    self._encoder = None
    self._relabel = dict(source.relabel)
    self._label_files = dict(source.label_files)

  def record(self, modality, split, item):
    """(ExampleRecord without its vector, None) or (None, skip reason)."""
    config = self.source.config
    if config.source == "synthcmp":
      from cmp_tf.data import synthcmp
      if self._grammar is None:
        self._grammar = synthcmp.load_grammar(
            places205=config.synthcmp_categories == "places205")
      return synthcmp.render_record(self._grammar, *item), None
    from cmp_tf.data import cmplaces
    source_split = "val" if split == "val" else "train"
    # A folders entry names its own file; a CMPlaces entry its label file and line.
    record, reason = cmplaces.read_entry(
        item, modality, source_split, self.source.categories, config.image_size,
        label_file=self._label_files.get((modality, source_split)), skip_bad=config.skip_bad)
    if record is not None and self._relabel:
      record.label = self._relabel[record.label]
    return record, reason

  def with_vectors(self, records):
    """Embeds the descriptions of `records` (None: skipped) in one call."""
    from cmp_tf.text import encoders
    if self._encoder is None:
      self._encoder = encoders.make_encoder(self.source.config.sentence_encoder)
    present = [r for r in records if r is not None]
    if present:
      vectors = encoders.encode_descriptions(self._encoder, [r.text for r in present],
                                             where=[r.example_id for r in present])
      for record, vector in zip(present, vectors):
        record.vector = vector
    return records

  def rows(self, unit):
    """(position, serialized record or None, label, example id, skip reason) per position."""
    made = [self.record(unit.modality, unit.split, item) for item in unit.items]
    records = [record for record, _ in made]
    if unit.modality == mod_lib.DSC:
      records = self.with_vectors(records)
    return [(p, None, -1, None, reason) if record is None else
            (p, tfrecord_io.serialize(record, self.source.vector_dim), int(record.label),
             record.example_id, None)
            for p, record, (_, reason) in zip(unit.positions, records, made)]


def write_shard_rows(staging, modality, split, shard, num_shards, rows, num_labels):
  """Writes one shard of `rows` sorted by position, then its summary beside it."""
  rows = sorted(rows, key=lambda row: row[0])
  path = os.path.join(staging, modality, tfrecord_io.shard_name(split, shard, num_shards))
  tfrecord_io.write_shard(path, [row[1] for row in rows if row[1] is not None])
  label_counts = [0] * num_labels
  skipped = {}
  for _, serialized, label, _, reason in rows:
    if serialized is None:
      skipped[reason] = skipped.get(reason, 0) + 1
    else:
      label_counts[label] += 1
  summary = {"count": sum(label_counts), "label_counts": label_counts, "skipped": skipped,
             "example_ids": [[p, i] for p, s, _, i, _ in rows if s is not None],
             "bytes": os.path.getsize(path), "digest": fileio.file_digest(path)}
  fileio.write_json_atomic(path + SUMMARY_SUFFIX, summary)


class _RenderFn:
  """The worker side: a unit in, its shard written (images) or keyed rows out (DSC)."""

  def __init__(self, source, staging, num_labels):
    self.source, self.staging, self.num_labels = source, staging, num_labels
    self.renderer = None

  def __call__(self, unit):
    if self.renderer is None:
      self.renderer = Renderer(self.source)
    try:
      rows = self.renderer.rows(unit)
      if unit.shard >= 0:
        write_shard_rows(self.staging, unit.modality, unit.split, unit.shard,
                         unit.num_shards, rows, self.num_labels)
        return []
      return [((unit.modality, unit.split, p % unit.num_shards, unit.num_shards), row)
              for p, row in zip(unit.positions, rows)]
    except DataError as e:
      raise RuntimeError(pipelines.data_error_text(e)) from None


class _WriteGroupFn:
  def __init__(self, staging, num_labels):
    self.staging, self.num_labels = staging, num_labels

  def __call__(self, keyed):
    (modality, split, shard, num_shards), rows = keyed
    write_shard_rows(self.staging, modality, split, shard, num_shards, list(rows),
                     self.num_labels)


def run(splits, source, staging, num_labels, options):
  """Writes every split of `splits` under `staging` with the Beam `options`."""
  units = [unit for split in splits for unit in work_units(split)]
  for split in splits:
    os.makedirs(os.path.join(staging, split.modality), exist_ok=True)

  def add_transforms(pipeline):
    beam = pipelines.import_beam()
    rows = (pipeline
            | "Units" >> beam.Create(units)  # reshuffled: spread over the workers
            | "Render" >> beam.FlatMap(_RenderFn(source, staging, num_labels)))
    _ = (rows
         | "ByShard" >> beam.GroupByKey()
         | "WriteShard" >> beam.Map(_WriteGroupFn(staging, num_labels)))

  pipelines.run(add_transforms, options)


def merge_summaries(staging, split):
  """The manifest's numbers of `split` from its shards' summaries (removed after)."""
  names = [tfrecord_io.shard_name(split.split, s, split.num_shards)
           for s in range(split.num_shards)]
  summaries = []
  for name in names:
    path = os.path.join(staging, split.modality, name + SUMMARY_SUFFIX)
    summaries.append(fileio.read_json(path))
    os.remove(path)
  label_counts = np.sum([s["label_counts"] for s in summaries], axis=0).astype(int).tolist()
  skipped = {}
  for summary in summaries:
    for reason, n in summary["skipped"].items():
      skipped[reason] = skipped.get(reason, 0) + n
  out = {"count": int(sum(s["count"] for s in summaries)),
         "shards": [f"{split.modality}/{n}" for n in names],
         "shard_bytes": [s["bytes"] for s in summaries],
         "shard_digests": [s["digest"] for s in summaries],
         "label_counts": label_counts}
  if split.split == "dev":
    ids = sorted(pair for s in summaries for pair in s["example_ids"])
    out["example_ids"] = [example_id for _, example_id in ids]
  return out, skipped


def probe_num_shards(renderer, modality, split, items):
  """The shard count of a split, from the size of its first `SIZE_PROBE` records (made
  here; a description's vector is sized, not embedded)."""
  sizes = []
  for item in items:
    if len(sizes) == SIZE_PROBE:
      break
    record, _ = renderer.record(modality, split, item)
    if record is None:
      continue
    if modality == mod_lib.DSC:
      record.vector = np.zeros(renderer.source.vector_dim, np.float32)
    sizes.append(len(tfrecord_io.serialize(record, renderer.source.vector_dim)))
  return tfrecord_io.choose_num_shards(len(items), np.mean(sizes) if sizes else 1)
