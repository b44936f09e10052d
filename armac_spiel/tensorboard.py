"""TensorBoard event files for a run, written from its metrics.jsonl records.

`TensorBoardWriter(run_dir, hparams).write(line)` turns one metrics record into scalars in
the run directory's own event files, so `tensorboard --logdir runs/sweep` lists every run of
a sweep by its directory and overlays them.

Two x axes, one tag per quantity: each scalar's step is the record's `episodes`, and its
wall time is `origin + train_s`, where `origin` is fixed per run directory (kept in
`tb_origin.json`, so a resumed run continues the same axis). In TensorBoard's horizontal-axis
selector, STEP is then episodes and RELATIVE is training seconds (evaluation excluded).

Tags: exploitability/{average,current,mixed}, nash_conv/{average,current,mixed},
loss/<name> (keys ending in `_loss`), speed/{episodes_per_s,steps_per_s},
time/{train_s,eval_s,epoch,step,iterations}, scheduler/<name> (keys `scheduler.<name>`),
other/<key> for any other number (not seed, nor the line's unix `time`). None, strings,
booleans and non-finite values are skipped; `scheduler.lambda_hist` (the fraction of states
whose lambda is nearest each bin) becomes the histogram scheduler/lambda, and `histogram()`
takes raw values (e.g. every state's lambda). The hyper-parameters (nested dicts flattened
with dots) go to the HPARAMS dashboard, with the exploitability tags as its metrics.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Optional, Sequence

import numpy as np

from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import rundir

ORIGIN_FILE = "tb_origin.json"
LAMBDA_HIST = "scheduler.lambda_hist"
LAMBDA_TAG = "scheduler/lambda"
_NAMED = {
    "exploitability": "exploitability/average",
    "exploitability_current": "exploitability/current",
    "exploitability_mixed": "exploitability/mixed",
    "nash_conv": "nash_conv/average",
    "nash_conv_current": "nash_conv/current",
    "nash_conv_mixed": "nash_conv/mixed",
    "episodes_per_s": "speed/episodes_per_s",
    "steps_per_s": "speed/steps_per_s",
    "train_s": "time/train_s",
    "eval_s": "time/eval_s",
    "epoch": "time/epoch",
    "step": "time/step",
    "iterations": "time/iterations",
}
SKIP = ("episodes", "seed", "time")
HPARAM_METRICS = ("exploitability/average", "exploitability/current", "exploitability/mixed",
                  "nash_conv/average")


def tag_for(key: str) -> Optional[str]:
  """The TensorBoard tag of a metrics key (None: the episodes axis, seed, unix time)."""
  if key in SKIP:
    return None
  if key in _NAMED:
    return _NAMED[key]
  if key.startswith("scheduler."):
    return "scheduler/" + key[len("scheduler."):].replace(".", "/")
  if key.endswith("_loss"):
    return "loss/" + key[:-len("_loss")]
  return "other/" + key


def _number(v) -> Optional[float]:
  if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
    return None
  v = float(v)
  return v if math.isfinite(v) else None


def flatten_hparams(d: dict, prefix: str = "") -> dict:
  """Nested dict -> {dotted.key: int | float | str | bool}; other values become strings."""
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten_hparams(v, key + "."))
    elif isinstance(v, (bool, int, float, str)):
      out[key] = v
    else:
      out[key] = json.dumps(v) if v is not None else "None"
  return out


class TensorBoardWriter:
  """Scalars, histograms and hyper-parameters of one run, in `run_dir/<subdir>`."""

  def __init__(self, run_dir: str, hparams: Optional[dict] = None, subdir: str = "",
               purge_step: Optional[int] = None, flush_secs: int = 10,
               lambda_bins: Optional[Sequence[float]] = None):
    """`purge_step`: on resume, the episodes count of the checkpoint; TensorBoard then hides
    events at or after it written by the run before it stopped. `lambda_bins`: the
    scheduler's lambda bins (default: a `k_bins` entry of `hparams`, else evenly spaced on
    [0, 1]) for the histogram drawn from `scheduler.lambda_hist`."""
    try:
      from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is in requirements.txt
      raise ImportError("TensorBoard logging needs the `tensorboard` package "
                        "(pip install -r requirements.txt)") from e
    self.log_dir = os.path.join(run_dir, subdir) if subdir else run_dir
    os.makedirs(self.log_dir, exist_ok=True)
    self.origin = self._origin()
    self._writer = SummaryWriter(self.log_dir, purge_step=purge_step, flush_secs=flush_secs)
    self._step = 0
    self._walltime = self.origin
    flat = flatten_hparams(hparams or {})
    if lambda_bins is None:
      found = [v for k, v in flat.items() if k.endswith("k_bins")]
      if found:
        lambda_bins = json.loads(found[0])
    self.lambda_bins = None if lambda_bins is None else [float(b) for b in lambda_bins]
    if flat:
      self._write_hparams(flat)

  def _origin(self) -> float:
    path = os.path.join(self.log_dir, ORIGIN_FILE)
    if os.path.exists(path):
      with open(path) as f:
        return float(json.load(f)["origin"])
    origin = time.time()
    atomic_write_text(path, json.dumps({"origin": origin}))
    return origin

  def _write_hparams(self, flat: dict) -> None:
    from torch.utils.tensorboard.summary import hparams
    exp, ssi, sei = hparams(flat, {m: 0.0 for m in HPARAM_METRICS})
    fw = self._writer._get_file_writer()
    for s in (exp, ssi, sei):
      fw.add_summary(s, walltime=self.origin)

  def _axes(self, line: dict) -> tuple[int, float]:
    ep = _number(line.get("episodes"))
    ts = _number(line.get("train_s"))
    if ep is not None:
      self._step = int(ep)
    if ts is not None:
      self._walltime = self.origin + ts
    return self._step, self._walltime

  def write(self, line: dict) -> int:
    """Writes every numeric field of one metrics record; returns the number of scalars."""
    step, walltime = self._axes(line)
    n = 0
    for key, value in line.items():
      tag = tag_for(key)
      v = _number(value)
      if tag is None or v is None:
        continue
      self._writer.add_scalar(tag, v, global_step=step, walltime=walltime)
      n += 1
    if isinstance(line.get(LAMBDA_HIST), list) and line[LAMBDA_HIST]:
      self._lambda_histogram(line, step, walltime)
    return n

  def _lambda_histogram(self, line: dict, step: int, walltime: float) -> None:
    """`scheduler.lambda_hist` (fraction of states nearest each bin) as a histogram whose
    buckets split the lambda axis halfway between bins."""
    frac = [float(x) for x in line[LAMBDA_HIST]]
    k = len(frac)
    bins = self.lambda_bins if self.lambda_bins and len(self.lambda_bins) == k else (
        np.linspace(0.0, 1.0, k).tolist())
    lo = _number(line.get("scheduler.lambda_min"))
    hi = _number(line.get("scheduler.lambda_max"))
    mean = _number(line.get("scheduler.lambda_mean"))
    std = _number(line.get("scheduler.lambda_std"))
    lo = bins[0] if lo is None else lo
    hi = bins[-1] if hi is None else hi
    mean = float(np.dot(frac, bins)) if mean is None else mean
    std = 0.0 if std is None else std
    limits = [(bins[i] + bins[i + 1]) / 2 for i in range(k - 1)] + [max(hi, bins[-1])]
    self._writer.add_histogram_raw(
        LAMBDA_TAG, min=lo, max=hi, num=1.0, sum=mean, sum_squares=std ** 2 + mean ** 2,
        bucket_limits=limits, bucket_counts=frac, global_step=step, walltime=walltime)

  def histogram(self, tag: str, values, step: Optional[int] = None,
                train_s: Optional[float] = None) -> None:
    """A histogram (e.g. the scheduler's per-state lambda), at `step` episodes (default: the
    last record's) and `train_s` training seconds."""
    arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    arr = arr.astype(np.float64).reshape(-1)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
      return
    walltime = self.origin + train_s if train_s is not None else self._walltime
    self._writer.add_histogram(tag, arr, global_step=self._step if step is None else step,
                               walltime=walltime)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def export_run(run_dir: str) -> int:
  """Writes a finished or running run's metrics.jsonl (and config.json as hyper-parameters)
  into fresh event files in `run_dir`; returns the number of records written."""
  for name in os.listdir(run_dir):
    if name.startswith("events.out.tfevents."):
      os.unlink(os.path.join(run_dir, name))
  cfg_path = os.path.join(run_dir, "config.json")
  hparams = {}
  if os.path.exists(cfg_path):
    with open(cfg_path) as f:
      hparams = json.load(f)
  lines = rundir.read_metrics(os.path.join(run_dir, rundir.METRICS))
  with TensorBoardWriter(run_dir, hparams) as w:
    for line in lines:
      w.write(line)
  return len(lines)


def for_run(spec) -> TensorBoardWriter:
  """The writer of a RunSpec's run directory, with its hyper-parameters (algorithm, game,
  seed, budgets, the learner's hyper-parameters and the scheduler suite)."""
  d = spec.to_dict()
  hp = {k: v for k, v in d.items() if k not in ("out_dir", "resume", "plot", "record")}
  return TensorBoardWriter(spec.out_dir, hp)
