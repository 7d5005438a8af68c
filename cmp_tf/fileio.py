"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

import hashlib
import json
import os
import tempfile


def _umask():
  """The process umask, read without changing it where Linux allows (os.umask is a
  process-wide set-and-restore that another thread could observe)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except OSError:
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def temp_path(path, suffix=""):
  """A fresh temp file beside `path` (same directory, so os.replace is atomic).

  Its mode is that of a file made by open() (0666 less the umask), not mkstemp's 0600, so
  the renamed result is as readable as any other output.
  """
  directory = os.path.dirname(os.path.abspath(os.fspath(path)))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(os.fspath(path))}.",
                             suffix=suffix + ".tmp", dir=directory)
  os.fchmod(fd, 0o666 & ~_umask())
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
