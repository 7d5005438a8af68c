"""Photo search in the shared space: index photos once, query by sketch, clip art, layout or text.

`build_search_index` (`python -m cmp_tf.search build`) embeds photos with the NAT branch (default: the NAT validation split of the
run's dataset; --images takes a dataset directory, TFRecord files or a glob of them,
or a folder of image files, <folder>/<category>/... naming categories) and stores a
faiss index of their normalised fc7 with ids, labels, categories and PNG thumbnails
under DIR/search/. `search_photos` (`... query`) embeds the query with its own modality's branch, prints
the top k photos (cosine score, category, id) and writes a result sheet PNG.

Embeddings come from the run's exported SavedModels when they exist and hold the
run's weights (what a TF Serving deployment computes), else from the Keras model;
--backend chooses explicitly and the output says which was used.
"""

import os
import time

from cmp_tf import fileio, finished_run, pipelines
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import embedders, grid, photo_pipeline, photos
from cmp_tf.serving import index as index_lib

SEARCH_DIR = "search"
DEFAULT_THUMB_SIZE = 64


def default_index_dir(run_dir):
  return os.path.join(os.path.abspath(os.fspath(run_dir)), SEARCH_DIR)


def build_search_index(run_dir, *, images=None, split="val", kind=index_lib.FLAT, nlist=None,
                       nprobe=None, backend=embedders.AUTO, thumb_size=DEFAULT_THUMB_SIZE,
                       index_dir=None, data_dir=None, workers=1, beam_options="",
                       progress=True):
  """Embeds and indexes the photos of `images` (None: the run's NAT `split`) through a Beam
  pipeline of `workers` local processes (0: one per core) or the runner `beam_options`
  names; returns index.json."""
  if kind not in index_lib.KINDS:
    raise ValueError(f"--index: unknown index kind {kind!r}; expected one of "
                     f"{', '.join(index_lib.KINDS)}")
  if split not in mod_lib.SPLITS:
    raise ValueError(f"--split: unknown split {split!r}; expected one of {mod_lib.SPLITS}")
  if thumb_size < 8:
    raise ValueError(f"--thumb_size must be >= 8, got {thumb_size}")
  if workers < 0:
    raise ValueError(f"--workers must be >= 0, got {workers}")
  info = finished_run.load_run(run_dir, data_dir=data_dir)
  if mod_lib.NAT not in info.modalities:
    raise ValueError(f"the run in {info.run_dir} has no NAT branch to embed photos with")
  runner = pipelines.describe_runner(workers, beam_options)  # checks the options
  description, units = photos.source_units(images, data_dir=info.data_dir, split=split,
                                           categories=info.categories)
  _, backend_note = embedders.make_embedder(info, [mod_lib.NAT], backend)
  if progress:
    print(f"indexing {description} ({len(units)} unit(s), {pipelines.runner_text(runner)})"
          f"\n  embedded with {backend_note}", flush=True)
  started = time.perf_counter()
  directory = index_dir or default_index_dir(info.run_dir)
  embeddings, ids, categories, thumbs = photo_pipeline.embed_photos(
      units, run_dir=info.run_dir, data_dir=info.data_dir, backend=backend,
      thumb_size=thumb_size, index_dir=directory, workers=workers,
      beam_options=beam_options)
  if not ids:
    raise ValueError(f"--images: {description} holds no photo")
  label_of = {name: i for i, name in enumerate(info.categories)}
  labels = [label_of.get(c, -1) for c in categories]
  meta = {"source": description, "backend": backend_note, "run_dir": info.run_dir,
          "fingerprint": info.weights_digest, "modality": mod_lib.NAT,
          "embedding": "L2-normalised fc7", "thumb_size": thumb_size, "runner": runner}
  built = index_lib.PhotoIndex.build(embeddings, ids, labels, categories, thumbs,
                                     kind=kind, nlist=nlist, nprobe=nprobe, meta=meta)
  built.meta["wall_time_s"] = round(time.perf_counter() - started, 2)
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
  info = finished_run.load_run(run_dir, data_dir=data_dir)
  directory = index_dir or default_index_dir(info.run_dir)
  photo_index = index_lib.PhotoIndex.load(directory)
  if photo_index.meta.get("fingerprint") != info.weights_digest:
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
  out_dir = os.path.dirname(os.path.abspath(out))
  created = None if os.path.isdir(out_dir) else out_dir
  fileio.write_bytes_atomic(out, grid.png_bytes(sheet))
  return {"hits": hits, "predicted": predicted, "probability": probability,
          "backend": backend_note, "out": out, "created_dir": created,
          "index_size": len(photo_index)}


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
  if result.get("created_dir"):
    lines.append(f"  (created the folder {result['created_dir']} for it)")
  return "\n".join(lines)
