"""Atomic writes, the one way cmp_tf writes a file or a directory: a reader sees the old
version or the new one, never half of one, and a killed writer leaves no partial output.

  with atomic_path("out/table.npz") as tmp:    # any writer that takes a path
    np.savez(tmp, ...)
  write_json_atomic("run.json", state)
  with atomic_directory("export/nat/3") as tmp_dir:   # a whole directory
    tf.saved_model.save(module, tmp_dir)

Temp names start with "." beside the target (same file system, so the rename is
atomic) and get the mode open() or mkdir() would give (0666 / 0777 less the umask),
not mkstemp's 0600 or mkdtemp's 0700, so outputs are as readable as any other file.
"""

import contextlib
import hashlib
import json
import os
import shutil
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


def _remove(path):
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temp file path beside `path`; on success it replaces `path`, on error it
  is removed. The temp name keeps `path`'s extension (np.savez, Keras and PIL insist)."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  name = os.path.basename(path)
  suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
  fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp" + suffix, dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  finally:
    if os.path.lexists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path):
  """Yields a new empty directory beside `path`; on success it replaces `path` (an
  existing one is moved aside, then deleted), on error it is removed."""
  path = os.fspath(path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.building-", dir=parent)
  try:
    yield tmp
    os.chmod(tmp, 0o777 & ~_umask())
    replace_directory(tmp, path)
  finally:
    if os.path.lexists(tmp):
      _remove(tmp)


def replace_directory(built, target):
  """Moves the finished directory `built` (a sibling of `target`) to `target`, replacing
  an existing one; readers see the old or the new directory, never a mix."""
  target = os.fspath(target)
  old = None
  if os.path.lexists(target):
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-",
                           dir=os.path.dirname(os.path.abspath(target)))
    os.rmdir(old)
    os.replace(target, old)
  os.replace(built, target)
  if old is not None:
    _remove(old)


def write_bytes_atomic(path, data):
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def write_text_atomic(path, text):
  """Writes `text` (UTF-8) to `path` atomically."""
  write_bytes_atomic(path, text.encode("utf-8"))


def write_png_atomic(path, image):
  """Writes a PIL image as PNG to `path`, atomically."""
  with atomic_path(path) as tmp:
    image.save(tmp, format="PNG")


def write_json_atomic(path, obj):
  """Writes `obj` as indented JSON (a trailing newline) to `path`, atomically."""
  write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def read_json(path, default=None):
  """The parsed JSON at `path`, or `default` when there is no such file; a damaged file
  is a ValueError naming it."""
  if not os.path.exists(path):
    return default
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path} is not valid JSON ({e}); it is damaged or was written "
                       "by something else") from None


class LockedError(OSError):
  """Another process holds the lock; the message names what and the holder's pid."""


_HELD_LOCKS = set()


@contextlib.contextmanager
def exclusive_lock(path, *, what, wait=False):
  """An advisory lock (flock) on the file `path`, released when the block ends or the
  process dies (kill -9 included: no stale pid file). Without `wait`, a lock held by
  another process is a LockedError at once, naming `what` and the holder's pid. Taking
  a lock this process already holds is a no-op."""
  import fcntl

  path = os.path.abspath(os.fspath(path))
  if path in _HELD_LOCKS:
    yield
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
      holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
      raise LockedError(f"{what} is in use by process {holder} (lock {path}); wait for it "
                        "to finish, or use another directory") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS.add(path)
    try:
      yield
    finally:
      _HELD_LOCKS.discard(path)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def file_digest(path):
  """A short sha256 of a file's content (which weights a result came from)."""
  return files_digest([path])


def files_digest(paths):
  """A short sha256 of the content of `paths`, in order."""
  sha = hashlib.sha256()
  for path in paths:
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        sha.update(block)
  return sha.hexdigest()[:16]


def directory_size(path):
  """Total bytes of the files under `path`."""
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)
