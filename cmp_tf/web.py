"""Photo search in the browser: draw a sketch, place words, write a description, or upload.

  python -m cmp_tf.web --run_dir=DIR [--host=127.0.0.1] [--port=8080] [--index_dir=DIR]
      [--max_body_bytes=4194304] [--backend=auto]

Loads the run's exported models (the SavedModels TF Serving would serve; the Keras model
when there is no current export) and its photo index once, building the index first when
it is missing (as `python -m cmp_tf.search build` does), then serves one page at / and the
JSON API under /api (`cmp_tf.serving.web_api`). Binds 127.0.0.1 unless told otherwise.
"""

from absl import app, flags, logging

from cmp_tf import cli
from cmp_tf.serving import embedders, web_api

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory of a finished training run.",
                    required=True)
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
flags.DEFINE_integer("port", 8080, "Port to listen on.")
flags.DEFINE_string("index_dir", "", "The photo index (default: RUN_DIR/search; built when "
                    "missing).")
flags.DEFINE_string("data_dir", "", "The run's dataset (default: the one in run.json).")
flags.DEFINE_enum("backend", embedders.AUTO, list(embedders.BACKENDS),
                  "Embed with the exported SavedModels, the Keras model, or auto.")
flags.DEFINE_integer("max_body_bytes", web_api.DEFAULT_MAX_BODY_BYTES,
                     "Largest request body accepted (413 above it).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not 0 < FLAGS.port < 65536:
    raise ValueError(f"--port: must be in [1, 65535], got {FLAGS.port}")
  if FLAGS.max_body_bytes < 1024:
    raise ValueError(f"--max_body_bytes: must be >= 1024, got {FLAGS.max_body_bytes}")
  logging.set_verbosity(logging.WARNING)
  import uvicorn
  service = web_api.SearchService(FLAGS.run_dir, index_dir=FLAGS.index_dir or None,
                                  data_dir=FLAGS.data_dir or None, backend=FLAGS.backend)
  print(f"loaded {service.run.name} ({service.backend}; {len(service.index)} photos) in "
        f"{service.startup_s:.1f} s; open http://{FLAGS.host}:{FLAGS.port}/", flush=True)
  uvicorn.run(web_api.create_app(service, max_body_bytes=FLAGS.max_body_bytes),
              host=FLAGS.host, port=FLAGS.port, log_level="warning")
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.web", main)
