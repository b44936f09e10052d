"""Deterministic replay recording: sampled episodes and their policies, during training.

`ReplayRecorder` (passed to `ARMAC` by the run layer when a RunSpec has `record`) writes the
files described in `armac_spiel.recording.format` into one directory. `resolve_recorder`
(called by armac_spiel.runs.resolve_spec) decides whether and where a run records: the
`--record_replay` directory, else the YAML's deterministic_replay section.

Resume. The run loop restores the learner from its last checkpoint (epoch E), so episodes
of epochs >= E are sampled again. On its first `before_sample` the recorder drops every
line with epoch >= E (and a truncated last line), deletes the policy files of those epochs
and continues numbering after the kept lines, so a resumed run leaves the same files as an
uninterrupted one. A fresh run (E = 0) clears the directory's replay files.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import json
import os
from typing import Any, Mapping, Optional, Union

import torch

from armac_spiel.atomic import atomic_torch_save, atomic_write_bytes, remove_temp_files
from armac_spiel.params import Params
from armac_spiel.recording.format import (FILE_RE, FORMAT, LEARNER_RULE, POLICY_FORMAT,
                                          POLICY_RE, Capture, encode_lines, file_name,
                                          json_state, params_hash, policy_name, replay_files,
                                          selected, write_replay_tolerance)
from armac_spiel.safe_load import load_tensor_file, tensor_bytes
from armac_spiel.scheduler.config import ReplayConfig

_VOLATILE = ("cost",)  # scheduler state entries zeroed in policy files (timings)


# ------------------------------------------------------------------ recorder
@dataclasses.dataclass(frozen=True)
class RecorderConfig(Params):
  """Where and what to record."""
  out_dir: str
  fraction: float = 1.0               # --replay_fraction
  episodes_per_file: int = 1000       # --replay_episodes_per_file
  gzip: bool = False                  # --replay_gzip
  tolerance: float = ReplayConfig.tolerance  # written to the directory for the verifier

  def validate(self) -> None:
    self.need(bool(self.out_dir), "out_dir", "a directory")
    self.need(0.0 <= self.fraction <= 1.0, "fraction", "in [0, 1]")
    self.need(self.episodes_per_file >= 1, "episodes_per_file", "an integer >= 1")
    self.need(self.tolerance >= 0, "tolerance", ">= 0")


RECORD_FLAGS = "--record_replay / --replay_* flags"


def resolve_recorder(options: Union[Mapping[str, Any], RecorderConfig, None],
                     replay: ReplayConfig) -> Optional[RecorderConfig]:
  """A run's recorder: into `options["out_dir"]` (--record_replay) when set, else into the
  deterministic_replay section's replay_dir when its `record` is true; None: no recording.
  `options` holds RecorderConfig fields (out_dir may be None); the tolerance is the
  section's."""
  opts = options.to_dict() if isinstance(options, RecorderConfig) else dict(options or {})
  out_dir = opts.get("out_dir") or (replay.replay_dir if replay.record else None)
  if not out_dir:
    return None
  return RecorderConfig.from_dict({**opts, "out_dir": out_dir, "tolerance": replay.tolerance},
                                  where=RECORD_FLAGS)


class ReplayRecorder:
  """ARMAC recorder hooks writing replay lines and per-epoch policy files."""

  def __init__(self, cfg: RecorderConfig, extra_config: dict | None = None):
    self.cfg = cfg
    self.extra_config = json.loads(json.dumps(extra_config or {}))
    self._started = False
    self._file_index = 0
    self._file_count = 0
    self._cur: dict | None = None
    os.makedirs(cfg.out_dir, exist_ok=True)

  # Resume safety.
  def _read_tolerant(self, path: str) -> list[str]:
    """Complete, parseable lines of a file; stops at the first bad or truncated one."""
    out = []
    try:
      opener = gzip.open if path.endswith(".gz") else open
      with opener(path, "rt") as f:
        for line in f:
          if not line.endswith("\n"):
            break
          json.loads(line)
          out.append(line.rstrip("\n"))
    except (OSError, EOFError, ValueError, UnicodeDecodeError):
      pass
    return out

  def _resume(self, epoch: int) -> None:
    """Drops lines and policy files of epochs >= `epoch`; continues after the kept lines."""
    d = self.cfg.out_dir
    remove_temp_files(d)  # of policy files whose writer was killed
    for p in glob.glob(os.path.join(d, "policy-e*.pt")):
      m = POLICY_RE.match(os.path.basename(p))
      if m and int(m.group(1)) >= epoch:
        os.unlink(p)
    last, count, cut = -1, 0, False
    for p in replay_files(d):
      idx = int(FILE_RE.match(os.path.basename(p)).group(1))
      if cut:
        os.unlink(p)
        continue
      raw = self._read_tolerant(p)
      keep = []
      for l in raw:  # lines are in epoch order
        if json.loads(l).get("epoch", epoch) >= epoch:
          break
        keep.append(l)
      if len(keep) < len(raw) or not _complete(p, raw):
        cut = True
        if not keep:
          os.unlink(p)
          continue
        self._rewrite(p, keep)
      last, count = idx, len(keep)
    if last < 0:
      self._file_index, self._file_count = 0, 0
    elif count >= self.cfg.episodes_per_file:
      self._file_index, self._file_count = last + 1, 0
    else:
      self._file_index, self._file_count = last, count
    gz_other = os.path.join(d, file_name(self._file_index, not self.cfg.gzip))
    if self._file_count and os.path.exists(gz_other):  # same number, other compression
      self._file_index, self._file_count = self._file_index + 1, 0

  def _rewrite(self, path: str, lines: list[str]) -> None:
    gz = path.endswith(".gz")
    out, k = b"", 0
    while k < len(lines):  # one gzip member per epoch, as when appended
      e = json.loads(lines[k])["epoch"]
      j = k
      while j < len(lines) and json.loads(lines[j])["epoch"] == e:
        j += 1
      out += encode_lines(lines[k:j], gz, os.path.basename(path))
      k = j
    atomic_write_bytes(path, out)

  # Hooks.
  def before_sample(self, learner, slots: torch.Tensor, learner_ids: torch.Tensor) -> None:
    if not self._started:
      self._resume(learner.epoch)
      write_replay_tolerance(self.cfg.out_dir, self.cfg.tolerance)
      self._started = True
    b = learner.cfg.episodes_per_epoch
    chosen = [i for i in range(b)
              if selected(learner.seed, learner.episodes + i, self.cfg.fraction)]
    self._cur = None
    if not chosen:
      return
    ck = policy_checkpoint(learner, slots, self.extra_config)
    name = policy_name(learner.epoch)
    atomic_torch_save(ck, os.path.join(self.cfg.out_dir, name))
    sched = ck["params"]["scheduler"]
    self._cur = {"capture": Capture(chosen, b), "name": name, "sha256": ck["sha256"],
                 "rng": ck["sampler_rng"], "slots": slots.tolist(),
                 "sched_sha": None if sched is None else params_hash(sched),
                 "epoch": learner.epoch, "base": learner.episodes,
                 "per": b // learner.cfg.groups_per_epoch}

  def on_step(self, learner, batch, outputs: dict) -> None:
    if self._cur is not None:
      self._cur["capture"].on_step(batch, outputs)

  def after_sample(self, learner, traj, slots: torch.Tensor, learner_ids: torch.Tensor) -> None:
    cur, self._cur = self._cur, None
    if cur is None:
      return
    lines = []
    for i in cur["capture"].chosen:
      g = i // cur["per"]
      rec = {"format": FORMAT, "game": learner.game_string, "seed": learner.seed,
             "epoch": cur["epoch"], "episode": cur["base"] + i, "batch_index": i,
             "group": g, "slot": cur["slots"][g], "learner": int(learner_ids[i]),
             "rng": {"sampler": cur["rng"], "batch_index": i,
                     "scheduler_sha256": cur["sched_sha"]},
             "policy": {"file": cur["name"], "sha256": cur["sha256"]},
             **cur["capture"].episode(traj, i)}
      lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":")))
    self._append(lines)

  def _append(self, lines: list[str]) -> None:
    n = self.cfg.episodes_per_file
    while lines:
      take = n - self._file_count
      chunk, lines = lines[:take], lines[take:]
      name = file_name(self._file_index, self.cfg.gzip)
      with open(os.path.join(self.cfg.out_dir, name), "ab") as f:
        f.write(encode_lines(chunk, self.cfg.gzip, name))
        f.flush()
      self._file_count += len(chunk)
      if self._file_count >= n:
        self._file_index, self._file_count = self._file_index + 1, 0


def _complete(path: str, raw: list[str]) -> bool:
  """Whether `raw` holds every line of the file (no truncated tail)."""
  if path.endswith(".gz"):
    try:
      with gzip.open(path, "rb") as f:
        data = f.read()
    except (OSError, EOFError):
      return False
  else:
    with open(path, "rb") as f:
      data = f.read()
  return data == "".join(l + "\n" for l in raw).encode()


def policy_checkpoint(learner, slots: torch.Tensor, extra_config: dict | None = None) -> dict:
  """The networks and states that produced one epoch's batch, with their parameter hash."""
  used = sorted({int(s) for s in slots.tolist() if s >= 0})
  bank = learner.bank
  params = {
      "regret": {k: v.detach().cpu().clone() for k, v in learner.regret.state_dict().items()},
      "actor": {k: v.detach().cpu().clone() for k, v in learner.actor.state_dict().items()},
      "bank": {"slots": used, "epoch": [int(bank.epoch[s]) for s in used],
               "weights": [w[used].detach().cpu().clone() for w in bank.weights["regret"]],
               "biases": [b[used].detach().cpu().clone() for b in bank.biases["regret"]]},
      "scheduler": None,
  }
  if learner.scheduler is not None:
    # A deep copy (state_dict may hold live tensors), read back as plain data.
    state = load_tensor_file(io.BytesIO(tensor_bytes(learner.scheduler.state_dict())),
                             "scheduler state")
    if isinstance(state, dict):  # wall-clock timings vary between identical runs
      for k in _VOLATILE:
        if isinstance(state.get(k), dict):
          state[k] = {n: type(v)(0) for n, v in state[k].items()}
    params["scheduler"] = state
    params["critic"] = {k: v.detach().cpu().clone()
                        for k, v in learner.critic.state_dict().items()}
  return {"format": POLICY_FORMAT, "game": learner.game_string, "seed": learner.seed,
          "epoch": learner.epoch, "episodes": learner.episodes,
          "config": learner.cfg.to_dict(), "extra_config": extra_config or {},
          "slots": slots.tolist(), "explore_eps": learner.cfg.explore_eps,
          "learner_rule": LEARNER_RULE, "num_players": learner.n_players,
          "sampler_rng": json_state(learner.sampler.get_rng_state()),
          "params": params, "sha256": params_hash(params)}
