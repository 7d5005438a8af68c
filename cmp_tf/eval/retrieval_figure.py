"""The paper's Figure 5: a validation query in each modality and its top results in every
other modality, as one PNG.

The queries are a seeded choice among the dataset's validation example ids, so every run on
one dataset shows the same queries and runs can be compared side by side. Ranking is the
evaluation's: cosine similarity of fc7 features (`retrieval.cosine_similarity`), ties kept
in target order.
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data import tfrecord_io
from cmp_tf.eval import retrieval
from cmp_tf.fileio import write_png_atomic
from cmp_tf.layer_names import FC7
from cmp_tf.serving import grid

QUERY_SEED = 0
TOP_K = 2
WRONG_FRAME = (200, 40, 40)


def choose_queries(val_sets, seed=QUERY_SEED):
  """{modality: example id}: one validation example per modality, drawn from the sorted
  example ids with `seed` (the same for every run of a dataset)."""
  rng = np.random.default_rng(seed)
  chosen = {}
  for m in mod_lib.ALL_MODALITIES:
    if m in val_sets and len(val_sets[m]):
      ids = sorted(str(i) for i in val_sets[m].example_ids)
      chosen[m] = ids[int(rng.integers(len(ids)))]
  return chosen


def top_hits(val_sets, queries, k=TOP_K, layer=FC7):
  """{query modality: {target modality: [(example id, label, score)]}}: the top `k` of every
  other modality for each query, by cosine similarity of `layer`."""
  hits = {}
  for query_mod, query_id in queries.items():
    source = val_sets[query_mod]
    row = int(np.flatnonzero(source.example_ids.astype(str) == query_id)[0])
    hits[query_mod] = {}
    for target_mod, target in val_sets.items():
      if target_mod == query_mod:
        continue
      scores = retrieval.cosine_similarity(source.features[layer][row:row + 1],
                                           target.features[layer])[0]
      order = np.argsort(-scores, kind="stable")[:k]
      hits[query_mod][target_mod] = [(str(target.example_ids[i]), int(target.labels[i]),
                                      float(scores[i])) for i in order]
  return hits


def read_examples(data_dir, manifest, wanted, split="val"):
  """{modality: {example id: ExampleRecord}} of the ids in `wanted` ({modality: ids})."""
  found = {}
  for modality, ids in wanted.items():
    ids = set(ids)
    paths = manifest_lib.shard_paths(manifest, data_dir, modality, split)
    found[modality] = {r.example_id: r for r in tfrecord_io.read_records(paths)
                       if r.example_id in ids}
  return found


def _tile(record, size):
  if record is None:
    return grid.text_tile("(missing)", size)
  if record.image_png:
    return grid.image_tile(record.image_png, size)
  return grid.text_tile(record.text, size)


def draw(queries, hits, records, categories, *, tile=112):
  """The figure as a PIL image: a row per query modality, the query (red frame) then the
  top hits of each other modality, captioned with their modality and category (green frame:
  the query's category, red: another)."""
  order = [m for m in mod_lib.ALL_MODALITIES if m in queries]
  k = max((len(v) for h in hits.values() for v in h.values()), default=0)
  pad, gap, left = 6, 16, 44
  font = ImageFont.load_default(size=max(9, tile // 10))
  line = max(9, tile // 10) + 4
  header, caption = line + 6, 2 * line + 4
  width = left + tile + gap + (len(order) - 1) * (k * (tile + pad) + gap)
  height = header + len(order) * (tile + caption + pad) + pad
  sheet = Image.new("RGB", (width, height), grid.BACKGROUND)
  pen = ImageDraw.Draw(sheet)
  pen.text((left, 2), "query", fill=grid.INK, font=font)
  pen.text((left + tile + gap, 2), f"top {k} in each other modality (fc7, cosine)",
           fill=grid.INK, font=font)
  for row, query_mod in enumerate(order):
    y = header + row * (tile + caption + pad)
    query = records[query_mod].get(queries[query_mod])
    query_label = query.label if query is not None else None
    cells = [(left, query_mod, query, grid.QUERY_FRAME)]
    x = left + tile + gap
    for target_mod in order:
      if target_mod == query_mod:
        continue
      for example_id, label, _ in hits[query_mod][target_mod]:
        frame = grid.MATCH_FRAME if label == query_label else WRONG_FRAME
        cells.append((x, target_mod, records[target_mod].get(example_id), frame))
        x += tile + pad
      x += gap - pad
    for cx, modality, record, frame in cells:
      sheet.paste(_tile(record, tile), (cx, y))
      pen.rectangle([cx - 2, y - 2, cx + tile + 1, y + tile + 1], outline=frame, width=3)
      name = categories[record.label] if record is not None else "?"
      pen.text((cx, y + tile + 3), modality.upper(), fill=grid.INK, font=font)
      pen.text((cx, y + tile + 3 + line), grid.fit_text(pen, name, font, tile), fill=grid.INK,
               font=font)
    pen.text((4, y + tile // 2 - line // 2), query_mod.upper(), fill=grid.QUERY_FRAME, font=font)
  return sheet


def write(path, val_sets, data_dir, manifest, *, seed=QUERY_SEED, k=TOP_K):
  """Writes Figure 5 for these validation features to `path`; returns what it shows
  ({"queries": {modality: id}, "hits": {query: {target: [[id, label, score]]}}})."""
  queries = choose_queries(val_sets, seed)
  hits = top_hits(val_sets, queries, k)
  wanted = {m: {queries[m]} if m in queries else set() for m in val_sets}
  for by_target in hits.values():
    for target_mod, found in by_target.items():
      wanted[target_mod].update(example_id for example_id, _, _ in found)
  records = read_examples(data_dir, manifest, wanted)
  write_png_atomic(path, draw(queries, hits, records, manifest["categories"]))
  return {"queries": queries, "seed": seed,
          "hits": {q: {t: [list(h) for h in found] for t, found in by_target.items()}
                   for q, by_target in hits.items()}}
