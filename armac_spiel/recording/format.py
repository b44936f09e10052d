"""The deterministic-replay file format, shared by the recorder and the verifier.

A replay directory holds:

- `replay-NNNNN.jsonl` (or `.jsonl.gz` with gzip): one JSON line per recorded episode, at
  most `episodes_per_file` lines per file, files numbered from 0. Lines are appended once
  per epoch (one gzip member per epoch and file).
- `policy-eNNNNNNN.pt`: per recorded epoch, the networks the episodes were sampled with
  (written atomically before sampling): live regret net and actor state_dicts, the
  SnapshotBank regret rows of the slots used, the slots, explore_eps, the sampler RNG state
  at the start of the batch, the config and, with a scheduler, its state (generator
  included; wall-clock `cost` entries zeroed) and the critic. `sha256` is the hash of the
  parameter bytes (see `params_hash`).
- `tolerance.json`: `{"tolerance": t}`, the run's deterministic_replay.tolerance, the
  default of experiments.replay_verify's --tolerance.

One line (format `armac-spiel/replay-v1`, keys sorted, no timestamps):
  format, game, seed, epoch, episode (global index), batch_index, group, slot, learner,
  rng: {sampler: numpy bit-generator state at the start of the batch, batch_index,
        scheduler_sha256: hash of the scheduler state (generator included) or null},
  policy: {file, sha256}, chance: outcome ids in order (the deck order),
  steps: {player, legal (legal action ids), action, regret_policy (pi_j), behaviour,
          and the scheduler outputs (mixed, actor, regret, lambda | logits, lambda_idx)
          when present}, one entry per decision step, returns.
Floats are float32 values written as their shortest round-trip decimal, so they read
back bit-exactly.

Reading runs no code: lines are parsed with json.loads, and policy files, which hold plain
data only, with torch.load(weights_only=True) (armac_spiel.safe_load); a policy file naming
any other type is refused (a ReplayError naming the file and the type).

Subset. With fraction f < 1, episode e (global index) of run seed s is recorded iff the
first 8 bytes of sha256(f"{s}:{e}"), read as a big-endian integer, are < f * 2**64.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import re

import numpy as np
import torch

from armac_spiel.atomic import atomic_write_text

FORMAT = "armac-spiel/replay-v1"
POLICY_FORMAT = "armac-spiel/replay-policy-v1"
LEARNER_RULE = ("armac.learner_ids: batch_index % num_players, or with alternating_updates "
                "the epoch of the group's policy % num_players in the past-policy groups")
FILE_RE = re.compile(r"^replay-(\d{5,})\.jsonl(\.gz)?$")
POLICY_RE = re.compile(r"^policy-e(\d{7,})\.pt$")
TOLERANCE_FILE = "tolerance.json"  # the run's deterministic_replay.tolerance, for verify
SKIP_OUTPUTS = ("is_learner",)
STEP_KEYS = ("player", "legal", "action", "regret_policy", "behaviour")


class ReplayError(ValueError):
  """A replay file that cannot be verified; the message names the file and line."""

  def __init__(self, path: str, line: int | None, msg: str):
    self.path, self.line = path, line
    where = path if line is None else f"{path}:{line}"
    super().__init__(f"{where}: {msg}")


# ------------------------------------------------------------------ helpers
def selected(seed: int, episode: int, fraction: float) -> bool:
  """Whether global episode `episode` of run `seed` is recorded at `fraction`."""
  if fraction >= 1.0:
    return True
  if fraction <= 0.0:
    return False
  h = hashlib.sha256(f"{seed}:{episode}".encode()).digest()
  return int.from_bytes(h[:8], "big") < fraction * 2.0 ** 64


def short_floats(a: np.ndarray):
  """float32 array -> nested lists of floats whose repr is the shortest float32 decimal."""
  a = np.asarray(a, dtype=np.float32)
  if a.ndim == 0:
    return float(str(a[()]))
  if a.ndim == 1:
    return [float(str(v)) for v in a]
  return [short_floats(r) for r in a]


def row_json(x: torch.Tensor):
  x = x.detach().cpu()
  if x.dtype.is_floating_point:
    return short_floats(x.float().numpy())
  return x.long().tolist() if x.dtype != torch.bool else x.int().tolist()


def _leaves(obj, prefix: str = ""):
  if isinstance(obj, dict):
    for k in sorted(obj, key=str):
      yield from _leaves(obj[k], f"{prefix}/{k}")
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      yield from _leaves(v, f"{prefix}/{i}")
  else:
    yield prefix, obj


def params_hash(params: dict) -> str:
  """sha256 over (path, dtype, shape, bytes) of every tensor leaf, repr of other leaves."""
  h = hashlib.sha256()
  for path, v in _leaves(params):
    h.update(path.encode())
    if isinstance(v, torch.Tensor):
      t = v.detach().cpu().contiguous()
      h.update(f"{t.dtype}{tuple(t.shape)}".encode())
      h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(v, np.ndarray):
      h.update(f"{v.dtype}{v.shape}".encode())
      h.update(np.ascontiguousarray(v).tobytes())
    else:
      h.update(repr(v).encode())
  return h.hexdigest()


def json_state(state: dict) -> dict:
  return json.loads(json.dumps(state))


def file_name(index: int, use_gzip: bool) -> str:
  return f"replay-{index:05d}.jsonl" + (".gz" if use_gzip else "")


def policy_name(epoch: int) -> str:
  return f"policy-e{epoch:07d}.pt"


def replay_files(replay_dir: str) -> list[str]:
  """The replay files of a directory in file-number order."""
  found = []
  for p in glob.glob(os.path.join(replay_dir, "replay-*.jsonl*")):
    m = FILE_RE.match(os.path.basename(p))
    if m:
      found.append((int(m.group(1)), p))
  return [p for _, p in sorted(found)]


def write_replay_tolerance(replay_dir: str, tolerance: float) -> None:
  """Records the verification tolerance (deterministic_replay.tolerance) in the directory."""
  os.makedirs(replay_dir, exist_ok=True)
  atomic_write_text(os.path.join(replay_dir, TOLERANCE_FILE),
                    json.dumps({"tolerance": float(tolerance)}))


def read_replay_tolerance(replay_dir: str) -> float | None:
  """The tolerance written by write_replay_tolerance (JSON), None when there is none."""
  path = os.path.join(replay_dir, TOLERANCE_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return float(json.load(f)["tolerance"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ReplayError(path, None, f"unreadable tolerance file: {e}") from None


def encode_lines(lines: list[str], use_gzip: bool, name: str) -> bytes:
  data = "".join(l + "\n" for l in lines).encode()
  if not use_gzip:
    return data
  buf = io.BytesIO()
  with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=0) as f:
    f.write(data)
  return buf.getvalue()


# ------------------------------------------------------------------ capture
class Capture:
  """Per-episode step records of one batch, filled from the recorder hooks."""

  def __init__(self, chosen: list[int], batch_size: int):
    self.chosen = chosen
    self.want = torch.zeros(batch_size, dtype=torch.bool)
    self.want[chosen] = True
    self.steps: dict[int, dict[str, list]] = {i: {} for i in chosen}

  def on_step(self, batch, outputs: dict) -> None:
    ep = batch.episode.cpu()
    rows = torch.nonzero(self.want[ep]).squeeze(1)
    if rows.numel() == 0:
      return
    r_all = ep.shape[0]
    fields = {"player": batch.player.cpu()[rows].tolist(),
              "legal": [torch.nonzero(m).squeeze(1).tolist()
                        for m in batch.legal_mask.cpu()[rows]]}
    for k, v in outputs.items():
      if k in SKIP_OUTPUTS:
        continue
      if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == r_all:
        sub = v.detach().cpu()[rows]
        fields[k] = [row_json(x) for x in sub]
      elif isinstance(v, float):
        fields[k] = [short_floats(np.float32(v))] * len(rows)
      elif isinstance(v, int) and not isinstance(v, bool):
        fields[k] = [v] * len(rows)
    for j, e in enumerate(ep[rows].tolist()):
      st = self.steps[e]
      for k, vals in fields.items():
        st.setdefault(k, []).append(vals[j])

  def episode(self, traj, i: int) -> dict:
    n = int(traj.length[i])
    steps = dict(self.steps[i])
    steps["action"] = traj.action[i, :n].tolist()
    chance = [c for c in traj.chance[i].tolist() if c >= 0]
    return {"chance": chance, "steps": steps,
            "returns": short_floats(traj.returns[i].float().numpy())}

