"""Run-directory I/O: metrics log, checkpoint, provenance, atomic JSON.

A run directory holds:
- `config.json` (the resolved RunSpec) and `provenance.json` (commit, versions, machine);
- `metrics.jsonl`, one JSON object per evaluation, appended and fsynced per line, so a
  crash loses at most the line being written;
- `checkpoint.pt`, written atomically after each evaluation; plain data only, read with
  torch.load(weights_only=True) (armac_spiel.safe_load);
- when finished, `policy.json` (armac-spiel/policy-v1), `curve.png` and an empty `DONE`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from typing import Optional

from absl import logging

from armac_spiel.atomic import atomic_torch_save, atomic_write_text
from armac_spiel.safe_load import UnsafeFileError, load_tensor_file

_REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
DONE = "DONE"
# Metrics fields that depend on the machine and its load, not on the seed (the scheduler's:
# the time its updates, its behaviour policy and its deployment's re-measuring took, and the
# update spacing that update_every auto measures, and the control's seconds and skips; an
# approximate evaluation's seconds and the episodes they bought).
TIMING_FIELDS = ("train_s", "eval_s", "eval_s_last", "eval_fraction", "steps_per_s",
                 "episodes_per_s", "time",
                 "scheduler.cost_ms_per_epoch", "scheduler.behaviour_s", "scheduler.train_s",
                 "scheduler.deploy_refresh_s", "scheduler.update_every",
                 "scheduler.update_fraction", "scheduler.control_s",
                 "scheduler.control_skipped", "approx_s", "approx_episodes")


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be read or does not belong to this run."""


class MetricsWriteError(OSError):
  """A metrics line could not be written (same errno); the file is as before the write."""


class MetricsLog:
  """Append-only JSONL writer: each `write` appends one line, flushed and fsynced.

  Opening drops a cut last line (a crash inside a write), so appends start on a line of
  their own. A write that fails (a full disk, an I/O error) truncates the file back to
  its previous end and raises `MetricsWriteError`: the file never holds part of a line.
  """

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._f = open(path, "ab", buffering=0)  # unbuffered: a failed write keeps nothing
    with open(path, "rb") as f:
      data = f.read()
    if data and not data.endswith(b"\n"):
      keep = data.rfind(b"\n") + 1
      logging.warning("%s: dropping a cut last line (%d bytes)", path, len(data) - keep)
      self._f.truncate(keep)

  def write(self, record: dict) -> None:
    line = json.dumps(record, allow_nan=True, sort_keys=False)
    if "\n" in line:
      raise ValueError("a metrics record must serialise to one line")
    data = (line + "\n").encode("utf-8")
    end = self._f.seek(0, os.SEEK_END)
    try:
      done = 0
      while done < len(data):
        done += self._f.write(data[done:])
      os.fsync(self._f.fileno())
    except OSError as e:
      try:
        self._f.truncate(end)
      except OSError:
        pass
      raise MetricsWriteError(e.errno, f"cannot append to {self.path} ({e.strerror or e}); "
                              "the line was not written") from e

  def close(self) -> None:
    if not self._f.closed:
      self._f.close()

  def __enter__(self) -> "MetricsLog":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_metrics(path: str) -> list[dict]:
  """Every complete record of a metrics file; a truncated last line is logged and skipped.

  A malformed line anywhere else means the file is corrupt and raises ValueError.
  """
  if not os.path.exists(path):
    return []
  with open(path, "r", encoding="utf-8") as f:
    lines = f.read().split("\n")
  # A file written by MetricsLog ends in "\n", so the last split element is "" unless the
  # final write was cut short.
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:
        logging.warning("%s: ignoring truncated last line (%d chars)", path, len(line))
        break
      raise ValueError(f"{path}: line {i + 1} is not valid JSON: {e}") from e
  return records


def truncate_metrics(path: str, n_lines: int) -> None:
  """Atomically rewrites `path` to its first `n_lines` complete records (used on resume)."""
  if n_lines < 0:
    raise ValueError(f"n_lines must be >= 0, got {n_lines}")
  records = read_metrics(path)
  if n_lines > len(records):
    raise ValueError(f"{path} has {len(records)} complete records, cannot keep {n_lines}")
  atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records[:n_lines]))


def write_json_atomic(path: str, obj) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _git(*args: str) -> Optional[str]:
  try:
    out = subprocess.run(["git", *args], cwd=_REPO_DIR, capture_output=True, text=True,
                         timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def _version(module: str) -> Optional[str]:
  try:
    from importlib import metadata
    return metadata.version(module)
  except Exception:  # pylint: disable=broad-except
    try:
      return getattr(__import__(module), "__version__", None)
    except ImportError:
      return None


def provenance() -> dict:
  """Git commit and dirtiness, library versions, machine and UTC timestamp."""
  commit = _git("rev-parse", "HEAD")
  status = _git("status", "--porcelain", "--untracked-files=no")
  versions = {"python": platform.python_version()}
  for dist, name in (("torch", "torch"), ("numpy", "numpy"), ("open_spiel", "open_spiel"),
                     ("ray", "ray")):
    v = _version(dist)
    if v is not None or name != "ray":  # ray only when importable
      versions[name] = v
  return {
      "git_commit": commit or "unknown",
      "git_dirty": bool(status) if status is not None else None,
      "versions": versions,
      "machine": {"platform": platform.platform(), "hostname": socket.gethostname(),
                  "cpu_count": os.cpu_count(), "executable": sys.executable},
      "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }


def read_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def save_checkpoint(path: str, obj: dict) -> None:
  atomic_torch_save(obj, path)


def load_checkpoint(path: str) -> dict:
  """The checkpoint at `path`, read as plain data (armac_spiel.safe_load): a file naming any
  other type raises UnsafeFileError (a ValueError) before anything in it is built."""
  try:
    return load_tensor_file(path, "checkpoint", hint=(
        "checkpoints hold plain data only (tensors, numbers, strings, lists, dicts); one "
        "written by an older armac-spiel version cannot be loaded: train again in a new "
        "--out_dir (or delete the checkpoint)"))
  except UnsafeFileError:
    raise
  except Exception as e:  # torch raises several types for truncated / foreign files
    raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: "
                          f"{e}); delete it to start over") from e


def strip_timing(rows: list[dict]) -> list[dict]:
  """Metrics lines without their TIMING_FIELDS: what a seed determines."""
  return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]
