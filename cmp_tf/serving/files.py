"""Atomic file writes: a temp name in the target's directory, then os.replace."""

import contextlib
import os
import shutil
import tempfile


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def make_temp_dir(parent, prefix):
  """A new directory in `parent` with the usual mode (mkdtemp makes it 0700)."""
  path = tempfile.mkdtemp(prefix=prefix, dir=parent)
  os.chmod(path, 0o777 & ~_umask())
  return path


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temp path beside `path`; on success it replaces `path`, on error it is removed."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]  # some writers (np.savez) insist on their extension
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix,
                             dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes_atomic(path, data):
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def replace_directory(built, target):
  """Moves the finished directory `built` to `target`, replacing an existing one.

  `built` must be on the same file system (a sibling); readers see the old or the
  new directory, never a half-written one.
  """
  target = os.fspath(target)
  old = None
  if os.path.exists(target):
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-",
                           dir=os.path.dirname(os.path.abspath(target)))
    os.rmdir(old)
    os.replace(target, old)
  os.replace(built, target)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def directory_size(path):
  """Total bytes of the files under `path`."""
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)
