"""One writer per run directory: a lock file naming its holder.

`RunLock(run_dir)` creates `run_dir/run.lock`, a JSON object {pid, host, started (UTC, ISO
8601), proc_start (the process's start time in clock ticks from /proc, or null), token}.
The file is written in full to a temporary name and then hard-linked to `run.lock`, which
fails when the name exists (as O_EXCL does), so a lock file is never seen half written.

A lock whose process is gone is stale and is taken over: same host and the pid is dead, or
the pid now belongs to a process that started at another time (a reused pid), or the file
is not a lock this module wrote. A live holder, or one on another host (which cannot be
checked from here), raises `RunLockedError` naming it. Checking and taking over happen under
`flock` on the run directory, so two processes that find the same stale lock cannot both take
it. `release` (or leaving the `with` block) removes the file if it is still ours; a process
killed by SIGKILL leaves it behind, stale. Once acquired, the lock's holder is the
directory's one writer, so it deletes the temp files that a killed writer's atomic writes
left there (armac_spiel.atomic.remove_temp_files; `removed_temp_files` names them).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import uuid

from armac_spiel.atomic import remove_temp_files

LOCK_NAME = "run.lock"
_before_takeover = None  # test hook: called between judging a lock stale and removing it


class RunLockedError(RuntimeError):
  """The run directory is locked by another live writer; the message names it."""

  def __init__(self, path: str, holder: dict, why: str):
    self.path, self.holder = path, holder
    who = (f"pid {holder.get('pid')} on host {holder.get('host')!r} since "
           f"{holder.get('started')}")
    super().__init__(f"{path}: run directory is in use by {who} ({why}); if that run is gone, "
                     f"delete {path}")


def _proc_start(pid: int) -> int | None:
  """Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22), or None."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      stat = f.read().decode(errors="replace")
  except OSError:
    return None
  try:  # the command name (field 2) may hold spaces and parentheses: split after its ')'
    return int(stat[stat.rindex(")") + 2:].split()[19])
  except (ValueError, IndexError):
    return None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def read_lock(run_dir: str) -> dict | None:
  """The holder recorded in `run_dir`'s lock file; None without one, {} if unreadable."""
  path = os.path.join(run_dir, LOCK_NAME)
  try:
    with open(path) as f:
      d = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}
  return d if isinstance(d, dict) else {}


def stale_reason(holder: dict) -> str | None:
  """Why the lock of `holder` is stale, or None when its process may still run."""
  pid, host = holder.get("pid"), holder.get("host")
  if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(host, str):
    return "not a lock file of armac_spiel.runs.lock"
  if host != socket.gethostname():
    return None
  if not _alive(pid):
    return f"pid {pid} is not running"
  start = holder.get("proc_start")
  now = _proc_start(pid)
  if start is not None and now is not None and now != start:
    return f"pid {pid} now belongs to another process"
  return None


class RunLock:
  """Context manager holding `run_dir/run.lock` for one writer; see the module docstring."""

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self.path = os.path.join(run_dir, LOCK_NAME)
    self.info: dict | None = None
    self.took_over: dict | None = None  # the stale holder replaced by acquire, if any
    self.removed_temp_files: list[str] = []

  def acquire(self) -> RunLock:
    if self.info is not None:
      raise RuntimeError(f"{self.path}: this RunLock is already held")
    os.makedirs(self.run_dir, exist_ok=True)
    pid = os.getpid()
    info = {"pid": pid, "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "proc_start": _proc_start(pid), "token": uuid.uuid4().hex}
    tmp = f"{self.path}.{pid}.{info['token'][:8]}.tmp"
    with open(tmp, "w") as f:
      json.dump(info, f, sort_keys=True)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    dfd = os.open(self.run_dir, os.O_RDONLY)
    try:
      fcntl.flock(dfd, fcntl.LOCK_EX)  # serialises check-and-take-over between processes
      for _ in range(3):
        try:
          os.link(tmp, self.path)
          break
        except FileExistsError:
          holder = read_lock(self.run_dir)
          if holder is None:  # released between link and read
            continue
          why = stale_reason(holder)
          if why is None:
            raise RunLockedError(self.path, holder, "it is running" if holder.get("host") ==
                                 info["host"] else "another host, not checked")
          if _before_takeover is not None:
            _before_takeover()
          os.unlink(self.path)
          self.took_over = {**holder, "stale": why}
      else:
        raise RunLockedError(self.path, read_lock(self.run_dir) or {}, "contended")
    finally:
      fcntl.flock(dfd, fcntl.LOCK_UN)
      os.close(dfd)
      os.unlink(tmp)
    self.info = info
    self.removed_temp_files = remove_temp_files(self.run_dir)
    return self

  def release(self) -> None:
    """Removes the lock file if it still holds this lock's token."""
    if self.info is None:
      return
    holder = read_lock(self.run_dir)
    if holder and holder.get("token") == self.info["token"]:
      os.unlink(self.path)
    self.info = None

  @property
  def held(self) -> bool:
    return self.info is not None

  def __enter__(self) -> RunLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
