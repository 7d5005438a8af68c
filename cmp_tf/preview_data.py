"""A contact sheet of a built dataset, so a person can see the data.

  python -m cmp_tf.preview_data --data_dir=DIR --out=sheet.png [--split=val]
      [--per_category=1] [--max_categories=N] [--cell=96]

One row per category (per_category rows each), one column per modality; descriptions
are shown as wrapped text (cmp_tf.data.preview).
"""

from absl import app, flags

from cmp_tf import cli, fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.data import preview

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Dataset directory (with manifest.json).")
flags.DEFINE_string("out", None, "Output PNG file.")
flags.DEFINE_enum("split", "val", list(mod_lib.SPLITS), "Which split to show.")
flags.DEFINE_integer("per_category", 1, "Examples (rows) per category.")
flags.DEFINE_integer("max_categories", 0, "Show at most this many categories (0: all).")
flags.DEFINE_integer("cell", 96, "Side of one image cell, in pixels.")
flags.mark_flags_as_required(["data_dir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  sheet = preview.make_contact_sheet(FLAGS.data_dir, FLAGS.split, FLAGS.per_category,
                                     FLAGS.max_categories or None, FLAGS.cell)
  fileio.write_png_atomic(FLAGS.out, sheet)
  print(f"wrote {FLAGS.out} ({sheet.size[0]}x{sheet.size[1]})")


if __name__ == "__main__":
  cli.run("cmp_tf.preview_data", main)
