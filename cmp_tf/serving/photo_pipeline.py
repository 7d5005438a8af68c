"""Embeds the photos of a search index through a Beam pipeline (`cmp_tf.pipelines`).

Each unit of photos (`photos.Unit`: a TFRecord file or a run of image files) is embedded
by a worker that loads the run's NAT embedder once, in batches of `BATCH` photos; the
worker writes its unit's embeddings, ids, categories and thumbnails to a file of its own,
and the driver reads them back in unit order, so the index has the same photos in the same
order with the same scores however many workers ran.
"""

import os
import shutil

import numpy as np

from cmp_tf import fileio, pipelines
from cmp_tf import modalities as mod_lib
from cmp_tf.errors import DataError
from cmp_tf.serving import photos

BATCH = 256


class _EmbedFn:
  """The worker side: (unit number, unit) in, the unit's file written."""

  def __init__(self, run_dir, data_dir, backend, thumb_size, work_dir):
    self.run_dir, self.data_dir, self.backend = run_dir, data_dir, backend
    self.thumb_size, self.work_dir = thumb_size, work_dir
    self.embedder = None

  def __call__(self, numbered):
    number, unit = numbered
    try:
      self._embed(number, unit)
    except DataError as e:
      raise RuntimeError(pipelines.data_error_text(e)) from None

  def _embed(self, number, unit):
    if self.embedder is None:
      from cmp_tf import finished_run
      from cmp_tf.serving import embedders
      info = finished_run.load_run(self.run_dir, data_dir=self.data_dir)
      self.embedder, _ = embedders.make_embedder(info, [mod_lib.NAT], self.backend)
    ids, categories, thumbs, parts, batch = [], [], [], [], []
    for photo in photos.unit_photos(unit):
      thumbs.append(photos.thumbnail_png(photo, self.thumb_size))  # checks the image first
      ids.append(photo.id)
      categories.append(photo.category)
      batch.append(photo.encoded)
      if len(batch) == BATCH:
        parts.append(self.embedder.images(mod_lib.NAT, batch)["embedding"])
        batch = []
    if batch:
      parts.append(self.embedder.images(mod_lib.NAT, batch)["embedding"])
    sizes = np.array([len(t) for t in thumbs], np.int64)
    with fileio.atomic_path(_unit_path(self.work_dir, number)) as tmp:
      np.savez(tmp, embeddings=np.concatenate(parts) if parts else np.zeros((0, 0)),
               ids=np.array(ids, dtype=str), categories=np.array(categories, dtype=str),
               thumb_sizes=sizes,
               thumbs=np.frombuffer(b"".join(thumbs), np.uint8))


def _unit_path(work_dir, number):
  return os.path.join(work_dir, f"unit-{number:08d}.npz")


def embed_photos(units, *, run_dir, data_dir, backend, thumb_size, index_dir, workers=1,
                 beam_options=""):
  """(embeddings, ids, categories, thumbnails) of every photo of `units`, in unit order.
  The workers' files go to a folder beside `index_dir`, removed at the end."""
  index_dir = os.path.abspath(index_dir)
  work_dir = os.path.join(os.path.dirname(index_dir),
                          f".{os.path.basename(index_dir)}.embedding-{os.getpid()}")
  shutil.rmtree(work_dir, ignore_errors=True)
  os.makedirs(work_dir)
  try:
    def add_transforms(pipeline):
      beam = pipelines.import_beam()
      _ = (pipeline
           | "Units" >> beam.Create(list(enumerate(units)))
           | "Embed" >> beam.Map(_EmbedFn(run_dir, data_dir, backend, thumb_size, work_dir)))

    pipelines.run(add_transforms, pipelines.pipeline_options(workers, beam_options))
    embeddings, ids, categories, thumbs = [], [], [], []
    for number in range(len(units)):
      with np.load(_unit_path(work_dir, number)) as part:
        if len(part["ids"]):
          embeddings.append(part["embeddings"])
        ids.extend(part["ids"].tolist())
        categories.extend(part["categories"].tolist())
        data, offsets = part["thumbs"].tobytes(), np.cumsum(part["thumb_sizes"])
        thumbs.extend(data[a:b] for a, b in zip(np.concatenate([[0], offsets[:-1]]), offsets))
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  return (np.concatenate(embeddings) if embeddings else None), ids, categories, thumbs
