"""Where the repository's shipped files live (the top-level `data/` and `configs/`)."""

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_DIR = pathlib.Path(os.environ.get("CMP_TF_DATA", REPO_ROOT / "data"))
CONFIGS_DIR = REPO_ROOT / "configs"
DEFAULT_CACHE_DIR = pathlib.Path(
    os.environ.get("CMP_TF_CACHE", REPO_ROOT / ".cache"))


def shipped(name):
  """Path of a file shipped in `data/`; a clear error if it is missing."""
  path = DATA_DIR / name
  if not path.exists():
    raise FileNotFoundError(
        f"shipped data file {path} is missing; is cmp_tf installed from a "
        "full checkout (pip install -e .)?")
  return path
