"""A faiss index of photo embeddings, with ids, labels, categories and thumbnails beside it.

Embeddings are L2-normalised fc7 vectors, so inner product is cosine similarity.
  flat  IndexFlatIP: exact search, the default (fast enough up to ~10^6 photos on a CPU)
  ivf   IndexIVFFlat: inverted lists over k-means cells for large collections;
        approximate, `nprobe` cells are searched per query

On disk (one directory, every file written atomically, index.json last):
  index.faiss  the faiss index; row i is item i
  items.npz    ids, labels (-1: unknown), categories, PNG thumbnails (one byte blob
               plus offsets), and the build id that ties the three files together
  index.json   what was indexed: count, dim, kind, nlist/nprobe, source, weights
"""

import datetime
import json
import math
import os
import uuid

import numpy as np

from cmp_tf import fileio

INDEX_FAISS = "index.faiss"
ITEMS_NPZ = "items.npz"
INDEX_JSON = "index.json"
FLAT = "flat"
IVF = "ivf"
KINDS = (FLAT, IVF)
_POINTS_PER_CELL = 39  # faiss's minimum training points per k-means centroid


class PhotoIndexError(ValueError):
  """A missing, damaged or mismatched index directory."""


def default_nlist(count):
  """IVF cells for `count` photos: ~4 sqrt(N), with enough points to train each cell."""
  return max(1, min(int(round(4 * math.sqrt(count))), count // _POINTS_PER_CELL))


def normalise(vectors):
  vectors = np.ascontiguousarray(vectors, np.float32)
  norms = np.linalg.norm(vectors, axis=1, keepdims=True)
  return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), np.float32)


class PhotoIndex:
  """Embeddings in faiss plus what to show for each hit."""

  def __init__(self, index, ids, labels, categories, thumbnails, meta):
    self.index = index
    self.ids = list(ids)
    self.labels = np.asarray(labels, np.int64)
    self.categories = list(categories)
    self.thumbnails = list(thumbnails)
    self.meta = dict(meta)

  def __len__(self):
    return len(self.ids)

  @classmethod
  def build(cls, embeddings, ids, labels, categories, thumbnails, *, kind=FLAT, nlist=None,
            nprobe=None, meta=None):
    """Indexes `embeddings` [N, D]; `nlist`/`nprobe` only for kind="ivf"."""
    import faiss

    embeddings = normalise(embeddings)
    count, dim = embeddings.shape
    if not count:
      raise ValueError("no photos to index")
    for name, values in (("ids", ids), ("labels", labels), ("categories", categories),
                         ("thumbnails", thumbnails)):
      if len(values) != count:
        raise ValueError(f"{len(values)} {name} for {count} embeddings")
    meta = dict(meta or {})
    if kind == FLAT:
      index = faiss.IndexFlatIP(dim)
    elif kind == IVF:
      nlist = int(nlist or default_nlist(count))
      if nlist < 1 or nlist > count:
        raise ValueError(f"--nlist must be in [1, {count}] for {count} photos, got {nlist}")
      quantizer = faiss.IndexFlatIP(dim)
      index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
      index.train(embeddings)
      nprobe = int(nprobe or min(nlist, 8))
      index.nprobe = nprobe
      meta.update(nlist=nlist, nprobe=nprobe)
    else:
      raise ValueError(f"--index: unknown index kind {kind!r}; expected one of {KINDS}")
    index.add(embeddings)
    meta.update(kind=kind, count=count, dim=dim, build_id=uuid.uuid4().hex,
                created=datetime.datetime.now().isoformat(timespec="seconds"))
    return cls(index, ids, labels, categories, thumbnails, meta)

  def save(self, directory):
    """Writes the three files (index.json last, so a reader never sees a half-built index)."""
    import faiss

    os.makedirs(directory, exist_ok=True)
    with fileio.atomic_path(os.path.join(directory, INDEX_FAISS)) as tmp:
      faiss.write_index(self.index, tmp)
    blob = b"".join(self.thumbnails)
    offsets = np.cumsum([0] + [len(t) for t in self.thumbnails]).astype(np.int64)
    with fileio.atomic_path(os.path.join(directory, ITEMS_NPZ)) as tmp:
      np.savez(tmp, ids=np.array(self.ids, dtype=str), labels=self.labels,
               categories=np.array(self.categories, dtype=str),
               thumbnail_bytes=np.frombuffer(blob, np.uint8), thumbnail_offsets=offsets,
               build_id=np.array(self.meta["build_id"]))
    fileio.write_bytes_atomic(os.path.join(directory, INDEX_JSON),
                             (json.dumps(self.meta, indent=1) + "\n").encode())

  @classmethod
  def load(cls, directory):
    """The index saved in `directory`; a clear error when it is missing or inconsistent."""
    import faiss

    paths = {name: os.path.join(directory, name) for name in (INDEX_JSON, ITEMS_NPZ, INDEX_FAISS)}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
      raise PhotoIndexError(f"no photo index in {directory} ({os.path.basename(missing[0])} is "
                        "missing); build one with: python -m cmp_tf.search build --run_dir=...")
    with open(paths[INDEX_JSON], encoding="utf-8") as f:
      meta = json.load(f)
    with np.load(paths[ITEMS_NPZ], allow_pickle=False) as items:
      build_id = str(items["build_id"])
      ids, labels = items["ids"].tolist(), items["labels"]
      categories = items["categories"].tolist()
      blob, offsets = items["thumbnail_bytes"].tobytes(), items["thumbnail_offsets"]
    index = faiss.read_index(paths[INDEX_FAISS])
    if build_id != meta.get("build_id") or index.ntotal != len(ids) or len(ids) != meta.get(
        "count"):
      raise PhotoIndexError(f"the files in {directory} come from different builds (an interrupted "
                        "build?); rebuild the index")
    if meta.get("kind") == IVF:
      index.nprobe = int(meta["nprobe"])
    thumbnails = [blob[offsets[i]:offsets[i + 1]] for i in range(len(ids))]
    return cls(index, ids, labels, categories, thumbnails, meta)

  def search(self, queries, k, nprobe=None):
    """(scores [Q, k'], positions [Q, k']) best first, k' = min(k, len); cosine scores.

    IVF searches mark missing results with position -1.
    """
    if k < 1:
      raise ValueError(f"--k must be >= 1, got {k}")
    if nprobe is not None:
      if self.meta.get("kind") != IVF:
        raise ValueError("--nprobe applies to an IVF index only")
      if not 1 <= nprobe <= self.meta["nlist"]:
        raise ValueError(f"--nprobe must be in [1, {self.meta['nlist']}], got {nprobe}")
      self.index.nprobe = int(nprobe)
    queries = normalise(np.atleast_2d(queries))
    if queries.shape[1] != self.index.d:
      raise ValueError(f"query embeddings have {queries.shape[1]} values but the index holds "
                       f"{self.index.d}-d embeddings (built from another model?)")
    scores, positions = self.index.search(queries, min(int(k), len(self)))
    return scores, positions

  def hits(self, query, k, nprobe=None):
    """Top hits of one query embedding: [{"rank", "score", "id", "label", "category",
    "position"}], best first (an IVF search may find fewer than k)."""
    scores, positions = self.search(query, k, nprobe)
    out = []
    for score, position in zip(scores[0], positions[0]):
      if position < 0:
        continue
      out.append({"rank": len(out) + 1, "score": float(score), "id": self.ids[position],
                  "label": int(self.labels[position]), "category": self.categories[position],
                  "position": int(position)})
    return out
