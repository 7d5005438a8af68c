"""Exact cross-modal retrieval at the paper's validation size against two baselines.

  python -m benchmarks.retrieval [--items=2050 --classes=205] [--variants=alexnet_small,alexnet]

For each image variant, random ReLU features of its pool5/fc6/fc7 widths, `--items`
per modality for five modalities (labels: `--classes` categories, equally many
items each), scored by `cmp_tf.eval.retrieval.cross_modal_retrieval` over all 20
ordered pairs x 3 layers (mAP and P@10 of every query). Compared, in interleaved
rounds, with
  - the bare work: the normalised similarity matmul of every pair, plus an argsort
    per row (a ranking) or a value sort per row, timed apart after one matmul, as is
    cmp_tf's scoring of that matrix alone (`similarity_scores`);
  - scikit-learn: the same 60 matmuls, then `average_precision_score` per query. The
    loop is timed on --sklearn_queries queries per layer and round and its best
    round's cost per query is extrapolated to all 20 x 2050 x 3 queries (the cost
    per query does not depend on the width).
cross_modal_retrieval computes one matrix per unordered pair (a pair and its reverse
share it), so it does half the matmuls of the other two.
BLAS runs on --blas_threads threads (1: as cmp_tf.evaluate runs its metrics).
"""

import sys
import time

import numpy as np
from absl import app, flags

from benchmarks import common
from cmp_tf.layer_names import FEATURE_LAYERS

FLAGS = flags.FLAGS
# pool5, fc6, fc7 widths of each image variant (cmp_tf.models.spec.CrossModalSpec.layer_dim;
# a smoke test checks them), so this benchmark needs no TensorFlow.
LAYER_WIDTHS = {"alexnet_small": (1024, 512, 512), "alexnet": (9216, 4096, 4096),
                "alexnet_tiny": (64, 32, 32)}
LAYERS = FEATURE_LAYERS
MODALITIES = ("nat", "clp", "spt", "ldr", "dsc")
TARGET_VS_SKLEARN = 50.0
TARGET_VS_MATMUL_SORT = 2.0


def define_flags():
  flags.DEFINE_integer("items", 2050, "Items per modality (the paper's validation size).")
  flags.DEFINE_integer("classes", 205, "Categories.")
  flags.DEFINE_list("variants", ["alexnet_small", "alexnet"], "Image variants whose layer "
                    f"widths to use: {', '.join(LAYER_WIDTHS)}.")
  flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the best is reported.")
  flags.DEFINE_integer("sklearn_queries", 100, "Queries per layer and round timed with "
                       "scikit-learn (spread over the pairs).")
  flags.DEFINE_integer("blas_threads", 1, "BLAS threads (0: the library's default).")
  flags.DEFINE_integer("seed", 0, "Seed of the random features and labels.")
  flags.DEFINE_string("out", "", "Results JSON; empty: benchmarks/results/retrieval.json.")


def make_features(widths, items, classes, seed):
  """({layer: {modality: [items, width] float32}}, {modality: labels}): random ReLU features."""
  rng = np.random.default_rng(seed)
  labels = {m: rng.permutation(np.arange(items) % classes) for m in MODALITIES}
  features = {layer: {m: np.maximum(rng.standard_normal((items, width), dtype=np.float32), 0)
                      for m in MODALITIES}
              for layer, width in zip(LAYERS, widths)}
  return features, labels


def _normalized(features):
  from cmp_tf.eval import retrieval
  return {m: retrieval._normalize(f, np.float32) for m, f in features.items()}


def bare_work(features, labels, pairs):
  """Seconds of the bare work, by part: {"matmul", "argsort", "sort", "cmp_tf_ranking"}.

  The normalised similarity matmul of every pair, then, timed apart on the same matrix,
  an argsort of each row (a ranking), a value sort of each row, and cmp_tf's scoring of
  the matrix (`similarity_scores`: mAP and P@10 from the precomputed similarities).
  """
  from cmp_tf.eval import retrieval
  spent = {"matmul": 0.0, "argsort": 0.0, "sort": 0.0, "cmp_tf_ranking": 0.0}
  for feats in features.values():
    start = time.perf_counter()
    normalized = _normalized(feats)
    spent["matmul"] += time.perf_counter() - start
    for query, target in pairs:
      start = time.perf_counter()
      similarity = normalized[query] @ normalized[target].T
      spent["matmul"] += time.perf_counter() - start
      start = time.perf_counter()
      np.argsort(-similarity, axis=1)
      spent["argsort"] += time.perf_counter() - start
      start = time.perf_counter()
      np.sort(similarity, axis=1)
      spent["sort"] += time.perf_counter() - start
      start = time.perf_counter()
      retrieval.similarity_scores(similarity, labels[query], labels[target])
      spent["cmp_tf_ranking"] += time.perf_counter() - start
  return spent


def sklearn_per_query(features, labels, pairs, num_queries, seed):
  """(seconds per query, max |AP difference| to cmp_tf) of scikit-learn's AP loop.

  Spread over every pair of every layer; the similarities come from the same matmul.
  """
  from sklearn.metrics import average_precision_score

  from cmp_tf.eval import retrieval
  rng = np.random.default_rng(seed)
  seconds, count, worst = 0.0, 0, 0.0
  for feats in features.values():
    normalized = _normalized(feats)
    per_pair = np.full(len(pairs), num_queries // len(pairs))
    per_pair[:num_queries % len(pairs)] += 1
    for (query, target), n in zip(pairs, per_pair):
      if n == 0:
        continue
      rows = rng.choice(len(labels[query]), n, replace=False)
      similarity = normalized[query][rows] @ normalized[target].T
      start = time.perf_counter()
      reference = [average_precision_score(labels[target] == label, row)
                   for row, label in zip(similarity, labels[query][rows])]
      seconds += time.perf_counter() - start
      count += n
      ours = retrieval.average_precision(similarity, labels[query][rows], labels[target])
      worst = max(worst, float(np.max(np.abs(ours - np.array(reference)))))
  return seconds / max(count, 1), worst, count


def run_variant(variant, *, items, classes, rounds, sklearn_queries, seed, log=print):
  """Timings and ratios of one variant's widths; returns a JSON-ready dict."""
  from cmp_tf.eval import retrieval
  widths = LAYER_WIDTHS[variant]
  features, labels = make_features(widths, items, classes, seed)
  pairs = retrieval.default_pairs(list(MODALITIES))

  def ours():
    for feats in features.values():
      retrieval.cross_modal_retrieval(feats, labels, pairs=pairs)

  timings = {name: common.Timing() for name in ("cmp_tf", "matmul", "matmul_argsort",
                                                 "matmul_sort", "cmp_tf_ranking")}
  sklearn = common.Timing()
  max_diff, timed = 0.0, 0
  for round_index in range(rounds):  # interleaved: ours, the bare work, scikit-learn
    timings["cmp_tf"].add(*common.time_once(ours))
    parts = bare_work(features, labels, pairs)
    for name, seconds in (("matmul", parts["matmul"]),
                          ("matmul_argsort", parts["matmul"] + parts["argsort"]),
                          ("matmul_sort", parts["matmul"] + parts["sort"]),
                          ("cmp_tf_ranking", parts["cmp_tf_ranking"])):
      timings[name].add(seconds, seconds)  # wall only: the parts are not CPU-timed
    per_query, diff, count = sklearn_per_query(features, labels, pairs, sklearn_queries,
                                               seed + round_index)
    sklearn.add(per_query, per_query)
    max_diff, timed = max(max_diff, diff), timed + count
  best = {name: t.summary()["best"] for name, t in timings.items()}
  per_query = sklearn.summary()["best"]
  num_queries = len(pairs) * items * len(LAYERS)
  sklearn_total = best["matmul"] + per_query * num_queries
  ranking = best["cmp_tf_ranking"]
  result = {
      "variant": variant, "widths": dict(zip(LAYERS, widths)), "items": items,
      "classes": classes, "pairs": len(pairs), "layers": len(LAYERS),
      "queries": num_queries, "seconds": best,
      "seconds_median": {name: t.summary()["median"] for name, t in timings.items()},
      "sklearn": {"queries_timed": timed, "ms_per_query": per_query * 1e3,
                  "extrapolated_seconds": sklearn_total,
                  "max_ap_difference_to_cmp_tf": max_diff},
      "cmp_tf_ranking_us_per_query": ranking / num_queries * 1e6,
      "speedup_vs_sklearn": sklearn_total / best["cmp_tf"],
      "ranking_speedup_vs_sklearn": (per_query * num_queries) / ranking,
      "ratio_to_matmul_argsort": best["cmp_tf"] / best["matmul_argsort"],
      "ratio_to_matmul_sort": best["cmp_tf"] / best["matmul_sort"],
      "load_average": common.load_average()}
  log(format_variant(result), flush=True)
  return result


def format_variant(r):
  s = r["seconds"]
  widths = "/".join(str(w) for w in r["widths"].values())
  return "\n".join([
      f"{r['variant']} (pool5/fc6/fc7 {widths}), {r['pairs']} pairs x {r['layers']} layers, "
      f"{r['items']} items per modality, {r['queries']} queries (load {r['load_average']}):",
      f"  cmp_tf cross_modal_retrieval (mAP + P@10) {s['cmp_tf']:8.2f} s",
      f"  matmul only                              {s['matmul']:8.2f} s",
      f"  matmul + argsort per row                 {s['matmul_argsort']:8.2f} s  -> cmp_tf is "
      f"{r['ratio_to_matmul_argsort']:.2f}x (target <= {TARGET_VS_MATMUL_SORT:g}x)",
      f"  matmul + value sort per row              {s['matmul_sort']:8.2f} s  -> cmp_tf is "
      f"{r['ratio_to_matmul_sort']:.2f}x",
      f"  scikit-learn AP loop (extrapolated from {r['sklearn']['queries_timed']} queries, "
      f"{r['sklearn']['ms_per_query']:.2f} ms/query) {r['sklearn']['extrapolated_seconds']:8.1f} s"
      f"  -> cmp_tf is {r['speedup_vs_sklearn']:.1f}x faster (target >= "
      f"{TARGET_VS_SKLEARN:g}x)",
      f"  scoring alone (similarity_scores on the matmul's matrices) {s['cmp_tf_ranking']:8.2f} s"
      f" ({r['cmp_tf_ranking_us_per_query']:.1f} us/query): "
      f"{r['ranking_speedup_vs_sklearn']:.0f}x faster than scikit-learn's loop",
      f"  largest |AP(cmp_tf) - AP(scikit-learn)| on the timed queries: "
      f"{r['sklearn']['max_ap_difference_to_cmp_tf']:.1e}"])


def run_benchmark(*, variants, items, classes, rounds, sklearn_queries, blas_threads, seed,
                  log=print):
  from threadpoolctl import threadpool_limits
  for variant in variants:
    if variant not in LAYER_WIDTHS:
      raise ValueError(f"--variants: unknown variant {variant!r}; expected some of "
                       f"{', '.join(LAYER_WIDTHS)}")
  if items < classes:
    raise ValueError(f"--items ({items}) must be at least --classes ({classes})")
  limits = threadpool_limits(limits=blas_threads, user_api="blas") if blas_threads else None
  try:
    results = [run_variant(v, items=items, classes=classes, rounds=rounds,
                           sklearn_queries=sklearn_queries, seed=seed, log=log)
               for v in variants]
  finally:
    if limits is not None:
      limits.restore_original_limits()
  return {"blas_threads": blas_threads or "default", "variants": results,
          "targets": {"speedup_vs_sklearn": TARGET_VS_SKLEARN,
                      "ratio_to_matmul_sort": TARGET_VS_MATMUL_SORT}}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for name in ("items", "classes", "rounds", "sklearn_queries"):
    if FLAGS[name].value < 1:
      raise app.UsageError(f"--{name} must be >= 1")
  print(f"load average {common.load_average()}", flush=True)
  try:
    results = run_benchmark(variants=FLAGS.variants, items=FLAGS.items, classes=FLAGS.classes,
                            rounds=FLAGS.rounds, sklearn_queries=FLAGS.sklearn_queries,
                            blas_threads=FLAGS.blas_threads, seed=FLAGS.seed)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  common.write_results(FLAGS.out or common.default_out("retrieval"), "retrieval", results,
                       sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
