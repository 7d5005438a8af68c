"""Performance benchmarks of cmp_tf: one script per benchmark, run from the checkout's root.

  python -m benchmarks.<name> [--flags]

Each prints its figures and writes them, with the machine's load, as JSON
(default benchmarks/results/<name>.json). BENCHMARKS.md lists the commands, the
latest figures and their targets.
"""

import os

# TensorFlow's C++ start-up chatter hides the figures; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
