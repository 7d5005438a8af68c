"""Photo search in the shared space: index photos once, query by sketch, clip art, layout or text.

  python -m cmp_tf.search build --run_dir=DIR [--images=DIR_OR_TFRECORDS] [--index=flat|ivf]
  python -m cmp_tf.search query --run_dir=DIR (--sketch=PNG | --clipart=PNG |
      --spatial_text="sky@0.5,0.1 tree@0.2,0.6 car@0.7,0.8" | --text="..." | --photo=IMG)
      [--k=10] [--out=PNG]

`build` embeds photos with the NAT branch (default: the NAT validation split of the
run's dataset; --images takes a dataset directory, TFRecord files or a glob of them,
or a folder of image files, <folder>/<category>/... naming categories) and stores a
faiss index of their normalised fc7 with ids, labels, categories and PNG thumbnails
under DIR/search/. `query` embeds the query with its own modality's branch, prints
the top k photos (cosine score, category, id) and writes a result sheet PNG.

Embeddings come from the run's exported SavedModels when they exist and hold the
run's weights (what a TF Serving deployment computes), else from the Keras model;
--backend chooses explicitly and the output says which was used.
"""

import os
import sys
import time

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import embedders, grid, photos, queries, runs
from cmp_tf.serving import index as index_lib

SEARCH_DIR = "search"
DEFAULT_THUMB_SIZE = 64
_CHUNK = 256


def default_index_dir(run_dir):
  return os.path.join(os.path.abspath(os.fspath(run_dir)), SEARCH_DIR)


def build_search_index(run_dir, *, images=None, split="val", kind=index_lib.FLAT, nlist=None,
                       nprobe=None, backend=embedders.AUTO, thumb_size=DEFAULT_THUMB_SIZE,
                       index_dir=None, data_dir=None, progress=True):
  """Embeds and indexes the photos of `images` (None: the run's NAT `split`); returns index.json."""
  if kind not in index_lib.KINDS:
    raise ValueError(f"--index: unknown index kind {kind!r}; expected one of "
                     f"{', '.join(index_lib.KINDS)}")
  if split not in mod_lib.SPLITS:
    raise ValueError(f"--split: unknown split {split!r}; expected one of {mod_lib.SPLITS}")
  if thumb_size < 8:
    raise ValueError(f"--thumb_size must be >= 8, got {thumb_size}")
  info = runs.load_run(run_dir, data_dir)
  if mod_lib.NAT not in info.modalities:
    raise ValueError(f"the run in {info.run_dir} has no NAT branch to embed photos with")
  description, source = photos.open_source(images, data_dir=info.data_dir, split=split,
                                           categories=info.categories)
  embedder, backend_note = embedders.make_embedder(info, [mod_lib.NAT], backend)
  if progress:
    print(f"indexing {description}\n  embedded with {backend_note}", flush=True)
  started = time.perf_counter()
  label_of = {name: i for i, name in enumerate(info.categories)}
  ids, labels, categories, thumbs, parts = [], [], [], [], []
  chunk = []

  def flush():
    parts.append(embedder.images(mod_lib.NAT, [p.encoded for p in chunk])["embedding"])
    chunk.clear()

  for photo in source:
    thumbs.append(photos.thumbnail_png(photo, thumb_size))  # checks the image first
    ids.append(photo.id)
    categories.append(photo.category)
    labels.append(label_of.get(photo.category, -1))
    chunk.append(photo)
    if len(chunk) == _CHUNK:
      flush()
      if progress:
        print(f"  {len(ids)} photos embedded", flush=True)
  if chunk:
    flush()
  if not ids:
    raise ValueError(f"--images: {description} holds no photo")
  import numpy as np

  meta = {"source": description, "backend": backend_note, "run_dir": info.run_dir,
          "fingerprint": info.fingerprint, "modality": mod_lib.NAT,
          "embedding": "L2-normalised fc7", "thumb_size": thumb_size}
  built = index_lib.PhotoIndex.build(np.concatenate(parts), ids, labels, categories, thumbs,
                                     kind=kind, nlist=nlist, nprobe=nprobe, meta=meta)
  built.meta["wall_time_s"] = round(time.perf_counter() - started, 2)
  directory = index_dir or default_index_dir(info.run_dir)
  built.save(directory)
  if progress:
    print(f"indexed {len(built)} photos ({built.meta['kind']}, {built.meta['dim']}-d) in "
          f"{built.meta['wall_time_s']:.1f} s -> {directory}", flush=True)
  return built.meta


def search_photos(run_dir, query, *, k=10, nprobe=None, backend=embedders.AUTO, index_dir=None,
                  data_dir=None, out=None):
  """Runs one queries.Query; returns {"hits", "predicted", "backend", "out"} and writes `out`.

  `out` (a PNG path) defaults to DIR/search/query_<kind>.png.
  """
  if int(k) != k or k < 1:
    raise ValueError(f"--k must be a positive integer, got {k}")
  info = runs.load_run(run_dir, data_dir)
  directory = index_dir or default_index_dir(info.run_dir)
  photo_index = index_lib.PhotoIndex.load(directory)
  if photo_index.meta.get("fingerprint") != info.fingerprint:
    raise ValueError(f"the index in {directory} was built from other weights than the run's "
                     "final.weights.h5; rebuild it with: python -m cmp_tf.search build "
                     f"--run_dir={info.run_dir}")
  if query.modality not in info.modalities:
    raise ValueError(f"--{query.kind}: the run has no {query.modality.upper()} branch")
  embedder, backend_note = embedders.make_embedder(info, [query.modality], backend)
  if query.modality == mod_lib.DSC:
    outputs = embedder.texts([query.text])
  else:
    outputs = embedder.images(query.modality, [query.encoded])
  hits = photo_index.hits(outputs["embedding"], k, nprobe)
  predicted = outputs["category"][0]
  probability = float(outputs["probabilities"][0].max())
  out = out or os.path.join(directory, f"query_{query.kind}.png")
  display = (grid.image_tile(query.display, 128) if query.display is not None
             else grid.text_tile(query.text, 128))
  sheet = grid.result_sheet(display, f"query: {predicted}", hits,
                            [photo_index.thumbnails[h["position"]] for h in hits],
                            query_category=predicted)
  fileio.write_bytes_atomic(out, grid.png_bytes(sheet))
  return {"hits": hits, "predicted": predicted, "probability": probability,
          "backend": backend_note, "out": out, "index_size": len(photo_index)}


def format_result(query, result):
  lines = [f"query ({query.kind}, {query.modality.upper()} branch): {query.summary}",
           f"  predicted category: {result['predicted']} (p={result['probability']:.2f})",
           f"  embedded with {result['backend']}",
           f"top {len(result['hits'])} of {result['index_size']} photos:",
           f"  {'rank':>4}  {'score':>6}  {'category':<24} id"]
  for hit in result["hits"]:
    lines.append(f"  {hit['rank']:>4}  {hit['score']:6.3f}  {hit['category'] or '-':<24} "
                 f"{hit['id']}")
  lines.append(f"result sheet: {result['out']}")
  return "\n".join(lines)


# === Command line ===

COMMANDS = ("build", "query")


def _define_flags():
  from absl import flags

  flags.DEFINE_string("run_dir", None, "Run directory of a finished training run.")
  flags.DEFINE_string("data_dir", "", "The run's dataset (default: the one in run.json).")
  flags.DEFINE_string("index_dir", "", "Where the index lives (default: RUN_DIR/search).")
  flags.DEFINE_enum("backend", embedders.AUTO, list(embedders.BACKENDS),
                    "Embed with the exported SavedModels, the Keras model, or auto "
                    "(exports when present and current).")
  # build
  flags.DEFINE_string("images", "", "build: photos to index: a dataset directory, TFRecord "
                      "file(s) or a glob, or a folder of images (default: the run's dataset).")
  flags.DEFINE_string("split", "val", "build: split of a dataset to index.")
  flags.DEFINE_string("index", index_lib.FLAT, "build: flat (exact inner product) or ivf "
                      "(approximate, for large collections).")
  flags.DEFINE_integer("nlist", None, "build: IVF cells (default ~4 sqrt(N)).")
  flags.DEFINE_integer("thumb_size", DEFAULT_THUMB_SIZE, "build: thumbnail side in pixels.")
  # query
  for kind, modality in queries.KINDS.items():
    what = "description text" if kind == "text" else (
        "layout WORD@X,Y ..." if kind == "spatial_text" else "image file")
    flags.DEFINE_string(kind, None, f"query: a {what} ({modality.upper()} branch).")
  flags.DEFINE_integer("k", 10, "query: number of photos to return.")
  flags.DEFINE_integer("nprobe", None, "query: IVF cells searched (default: the index's).")
  flags.DEFINE_string("out", "", "query: result sheet PNG (default: INDEX_DIR/query_<kind>.png).")
  flags.mark_flag_as_required("run_dir")


def _query_from_flags(flag_values):
  given = [kind for kind in queries.KINDS if flag_values[kind].value is not None]
  if len(given) != 1:
    names = " | ".join(f"--{k}" for k in queries.KINDS)
    raise ValueError(f"query needs exactly one of {names}"
                     + (f"; got {', '.join('--' + g for g in given)}" if given else ""))
  kind = given[0]
  info = runs.load_run(flag_values.run_dir, flag_values.data_dir or None)
  return queries.make_query(kind, flag_values[kind].value, info.manifest["image_size"])


def main(argv):
  from absl import flags, logging

  from cmp_tf.data.errors import DataError

  logging.set_verbosity(logging.WARNING)
  flag_values = flags.FLAGS
  if len(argv) != 2 or argv[1] not in COMMANDS:
    print(f"cmp_tf.search: error: expected one command, {' or '.join(COMMANDS)}; got "
          f"{' '.join(argv[1:]) or 'none'}", file=sys.stderr)
    return 2
  common = dict(backend=flag_values.backend, index_dir=flag_values.index_dir or None,
                data_dir=flag_values.data_dir or None)
  try:
    if argv[1] == "build":
      build_search_index(flag_values.run_dir, images=flag_values.images or None,
                         split=flag_values.split, kind=flag_values.index,
                         nlist=flag_values.nlist, thumb_size=flag_values.thumb_size, **common)
    else:
      if flag_values.k < 1:
        raise ValueError(f"--k must be >= 1, got {flag_values.k}")
      query = _query_from_flags(flag_values)
      result = search_photos(flag_values.run_dir, query, k=flag_values.k,
                             nprobe=flag_values.nprobe, out=flag_values.out or None, **common)
      print(format_result(query, result))
  except (ValueError, DataError, runs.RunError) as e:
    print(f"cmp_tf.search: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(main)
