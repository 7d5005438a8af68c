"""Photo search in the shared space: index photos once, query by sketch, clip art, layout or text.

  python -m cmp_tf.search build --run_dir=DIR [--images=DIR_OR_TFRECORDS] [--index=flat|ivf]
      [--workers=N] [--beam_options='--runner=FlinkRunner ...']
  python -m cmp_tf.search query --run_dir=DIR (--sketch=PNG | --clipart=PNG |
      --spatial_text="sky@0.5,0.1 tree@0.2,0.6 car@0.7,0.8" | --text="..." | --photo=IMG)
      [--k=10] [--out=PNG]

`build` indexes the normalised fc7 of photos (default: the NAT validation split of the
run's dataset) under DIR/search/; `query` embeds the query with its own modality's
branch, prints the top k photos and writes a result sheet PNG (`cmp_tf.serving.search`).
"""

import sys

from absl import flags, logging

from cmp_tf import cli
from cmp_tf.serving import embedders, queries, search
from cmp_tf.serving import index as index_lib

COMMANDS = ("build", "query")
FLAGS = flags.FLAGS
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
flags.DEFINE_integer("thumb_size", search.DEFAULT_THUMB_SIZE, "build: thumbnail side in pixels.")
flags.DEFINE_integer("workers", 1, "build: processes embedding photos on this machine (0: one "
                     "per core; each loads the model), through Beam's DirectRunner.")
flags.DEFINE_string("beam_options", "", "build: Apache Beam pipeline options passed through, "
                    "e.g. '--runner=FlinkRunner --flink_master=HOST:8081' (--workers is "
                    "then ignored).")
# query
for _kind, _modality in queries.KINDS.items():
  _what = "description text" if _kind == "text" else (
      "layout WORD@X,Y ..." if _kind == "spatial_text" else "image file")
  flags.DEFINE_string(_kind, None, f"query: a {_what} ({_modality.upper()} branch).")
flags.DEFINE_boolean("allow_unknown_words", False, "query: draw --spatial_text words the "
                     "training data never showed (by default an error listing them).")
flags.DEFINE_integer("k", 10, "query: number of photos to return.")
flags.DEFINE_integer("nprobe", None, "query: IVF cells searched (default: the index's).")
flags.DEFINE_string("out", "", "query: result sheet PNG (default: INDEX_DIR/query_<kind>.png).")
flags.mark_flag_as_required("run_dir")


def _query_from_flags():
  from cmp_tf import finished_run

  given = [kind for kind in queries.KINDS if FLAGS[kind].value is not None]
  if len(given) != 1:
    names = " | ".join(f"--{k}" for k in queries.KINDS)
    raise ValueError(f"query needs exactly one of {names}"
                     + (f"; got {', '.join('--' + g for g in given)}" if given else ""))
  kind = given[0]
  run = finished_run.load_run(FLAGS.run_dir, data_dir=FLAGS.data_dir or None)
  vocabulary = (None if FLAGS.allow_unknown_words
                else queries.spatial_text_vocabulary(run.manifest))
  return queries.make_query(kind, FLAGS[kind].value, run.manifest["image_size"], vocabulary)


def main(argv):

  logging.set_verbosity(logging.WARNING)
  if len(argv) != 2 or argv[1] not in COMMANDS:
    print(f"cmp_tf.search: error: expected one command, {' or '.join(COMMANDS)}; got "
          f"{' '.join(argv[1:]) or 'none'}", file=sys.stderr)
    return 2
  common = dict(backend=FLAGS.backend, index_dir=FLAGS.index_dir or None,
                data_dir=FLAGS.data_dir or None)
  if argv[1] == "build":
    search.build_search_index(FLAGS.run_dir, images=FLAGS.images or None, split=FLAGS.split,
                              kind=FLAGS.index, nlist=FLAGS.nlist,
                              thumb_size=FLAGS.thumb_size, workers=FLAGS.workers,
                              beam_options=FLAGS.beam_options, **common)
  else:
    if FLAGS.k < 1:
      raise ValueError(f"--k must be >= 1, got {FLAGS.k}")
    query = _query_from_flags()
    result = search.search_photos(FLAGS.run_dir, query, k=FLAGS.k, nprobe=FLAGS.nprobe,
                                  out=FLAGS.out or None, **common)
    print(search.format_result(query, result))
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.search", main)
