"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

import hashlib
import json
import os
import tempfile


def temp_path(path, suffix=""):
  """A fresh temp file beside `path` (same directory, so os.replace is atomic)."""
  directory = os.path.dirname(os.path.abspath(os.fspath(path)))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(os.fspath(path))}.",
                             suffix=suffix + ".tmp", dir=directory)
  os.close(fd)
  return tmp


def write_text_atomic(path, text):
  """Writes `text` to `path` through a temp file in the same directory."""
  tmp = temp_path(path)
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, os.fspath(path))
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json_atomic(path, obj):
  """Writes `obj` as indented JSON (a trailing newline) to `path`, atomically."""
  write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def file_digest(path):
  """A short sha256 of a file's content (which weights a result came from)."""
  sha = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      sha.update(block)
  return sha.hexdigest()[:16]
