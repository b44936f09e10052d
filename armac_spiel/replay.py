"""Deterministic replay: record sampled episodes during training, verify them afterwards.

Recording (`ReplayRecorder`, passed to `ARMAC` through `trainer.train(make_recorder=...)`)
writes into one directory:

- `replay-NNNNN.jsonl` (or `.jsonl.gz` with gzip): one JSON line per recorded episode, at
  most `episodes_per_file` lines per file, files numbered from 0. Lines are appended once
  per epoch (one gzip member per epoch and file).
- `policy-eNNNNNNN.pt`: per recorded epoch, the networks the episodes were sampled with
  (written atomically before sampling): live regret net and actor state_dicts, the
  SnapshotBank regret rows of the slots used, the slots, explore_eps, the sampler RNG state
  at the start of the batch, the config and, with a scheduler, its state (generator
  included; wall-clock `cost` entries zeroed) and the critic. `sha256` is the hash of the
  parameter bytes (see `params_hash`).

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

Subset. With fraction f < 1, episode e (global index) of run seed s is recorded iff the
first 8 bytes of sha256(f"{s}:{e}"), read as a big-endian integer, are < f * 2**64.

Resume. The trainer restores the learner from its last checkpoint (epoch E), so episodes
of epochs >= E are sampled again. On its first `before_sample` the recorder drops every
line with epoch >= E (and a truncated last line), deletes the policy files of those epochs
and continues numbering after the kept lines, so a resumed run leaves the same files as an
uninterrupted one. A fresh run (E = 0) clears the directory's replay files.

Verification (`verify`) rebuilds the networks from the policy files (checking the hash),
replays every episode on a pyspiel state from its chance outcomes and actions (checking
legality, players and legal masks), recomputes pi_j through the episode's snapshot, the
behaviour (epsilon exploration included) and the returns, and regenerates each recorded
batch from its RNG states with the rebuilt learner, which checks the chance outcomes,
actions and scheduler outputs. Regeneration runs on the CPU: a run recorded on a GPU
matches to float tolerance, and an action whose uniform falls within ~1e-7 of a CDF
boundary could in principle be drawn differently.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import io
import json
import os
import re

import numpy as np
import torch

from armac_spiel.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text

FORMAT = "armac-spiel/replay-v1"
POLICY_FORMAT = "armac-spiel/replay-policy-v1"
LEARNER_RULE = ("armac.learner_ids: batch_index % num_players, or with alternating_updates "
                "the epoch of the group's policy % num_players in the past-policy groups")
_FILE_RE = re.compile(r"^replay-(\d{5,})\.jsonl(\.gz)?$")
_POLICY_RE = re.compile(r"^policy-e(\d{7,})\.pt$")
_BASE_FIELDS = ("regret_policy", "behaviour")
_SKIP_OUTPUTS = ("is_learner",)
_VOLATILE = ("cost",)  # scheduler state entries zeroed in policy files (timings)


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


def _short_floats(a: np.ndarray):
  """float32 array -> nested lists of floats whose repr is the shortest float32 decimal."""
  a = np.asarray(a, dtype=np.float32)
  if a.ndim == 0:
    return float(str(a[()]))
  if a.ndim == 1:
    return [float(str(v)) for v in a]
  return [_short_floats(r) for r in a]


def _row_json(x: torch.Tensor):
  x = x.detach().cpu()
  if x.dtype.is_floating_point:
    return _short_floats(x.float().numpy())
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


def _json_state(state: dict) -> dict:
  return json.loads(json.dumps(state))


def file_name(index: int, use_gzip: bool) -> str:
  return f"replay-{index:05d}.jsonl" + (".gz" if use_gzip else "")


def policy_name(epoch: int) -> str:
  return f"policy-e{epoch:07d}.pt"


def replay_files(replay_dir: str) -> list[str]:
  """The replay files of a directory in file-number order."""
  found = []
  for p in glob.glob(os.path.join(replay_dir, "replay-*.jsonl*")):
    m = _FILE_RE.match(os.path.basename(p))
    if m:
      found.append((int(m.group(1)), p))
  return [p for _, p in sorted(found)]


def _encode_lines(lines: list[str], use_gzip: bool, name: str) -> bytes:
  data = "".join(l + "\n" for l in lines).encode()
  if not use_gzip:
    return data
  buf = io.BytesIO()
  with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=0) as f:
    f.write(data)
  return buf.getvalue()


# ------------------------------------------------------------------ capture
class _Capture:
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
      if k in _SKIP_OUTPUTS:
        continue
      if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == r_all:
        sub = v.detach().cpu()[rows]
        fields[k] = [_row_json(x) for x in sub]
      elif isinstance(v, float):
        fields[k] = [_short_floats(np.float32(v))] * len(rows)
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
            "returns": _short_floats(traj.returns[i].float().numpy())}


# ------------------------------------------------------------------ recorder
@dataclasses.dataclass(frozen=True)
class RecorderConfig:
  """Where and what to record."""
  out_dir: str
  fraction: float = 1.0
  episodes_per_file: int = 1000
  gzip: bool = False


class ReplayRecorder:
  """ARMAC recorder hooks writing replay lines and per-epoch policy files."""

  def __init__(self, cfg: RecorderConfig, extra_config: dict | None = None):
    if not 0.0 <= cfg.fraction <= 1.0:
      raise ValueError(f"replay_fraction must be in [0, 1], got {cfg.fraction}")
    if cfg.episodes_per_file < 1:
      raise ValueError(f"replay_episodes_per_file must be >= 1, got {cfg.episodes_per_file}")
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
    for p in glob.glob(os.path.join(d, "policy-e*.pt")):
      m = _POLICY_RE.match(os.path.basename(p))
      if m and int(m.group(1)) >= epoch:
        os.unlink(p)
    last, count, cut = -1, 0, False
    for p in replay_files(d):
      idx = int(_FILE_RE.match(os.path.basename(p)).group(1))
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
      out += _encode_lines(lines[k:j], gz, os.path.basename(path))
      k = j
    atomic_write_bytes(path, out)

  # Hooks.
  def before_sample(self, learner, slots: torch.Tensor, learner_ids: torch.Tensor) -> None:
    if not self._started:
      self._resume(learner.epoch)
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
    self._cur = {"capture": _Capture(chosen, b), "name": name, "sha256": ck["sha256"],
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
        f.write(_encode_lines(chunk, self.cfg.gzip, name))
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
    buf = io.BytesIO()  # a deep copy: state_dict may hold live tensors
    torch.save(learner.scheduler.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, map_location="cpu", weights_only=False)
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
          "sampler_rng": _json_state(learner.sampler.get_rng_state()),
          "params": params, "sha256": params_hash(params)}


TOLERANCE_FILE = "tolerance.json"


def write_tolerance(replay_dir: str, tolerance: float) -> None:
  """Records the verification tolerance (deterministic_replay.tolerance) in the replay dir."""
  os.makedirs(replay_dir, exist_ok=True)
  atomic_write_text(os.path.join(replay_dir, TOLERANCE_FILE),
                    json.dumps({"tolerance": float(tolerance)}))


def read_tolerance(replay_dir: str, default: float = 1e-6) -> float:
  """The tolerance written by write_tolerance, else `default`."""
  path = os.path.join(replay_dir, TOLERANCE_FILE)
  if not os.path.exists(path):
    return default
  try:
    with open(path) as f:
      return float(json.load(f)["tolerance"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ReplayError(path, None, f"unreadable tolerance file: {e}") from None


def recorder_factory(cfg: RecorderConfig):
  """`make_recorder` for `trainer.train`: spec -> ReplayRecorder."""
  return lambda spec: ReplayRecorder(cfg, getattr(spec, "extra_config", None))


# ------------------------------------------------------------------ verification
@dataclasses.dataclass(frozen=True)
class Mismatch:
  """The first difference found: global episode, decision step and field."""
  episode: int
  step: int
  field: str
  file: str
  line: int
  detail: str


@dataclasses.dataclass(frozen=True)
class VerifyResult:
  """Summary of a verification run."""
  episodes_checked: int
  max_abs_deviation: float
  first_mismatch: Mismatch | None

  def summary(self) -> dict:
    fm = self.first_mismatch
    return {"episodes_checked": self.episodes_checked,
            "max_abs_deviation": self.max_abs_deviation,
            "first_mismatch": None if fm is None else dataclasses.asdict(fm)}


_REQUIRED = {"format": str, "game": str, "seed": int, "epoch": int, "episode": int,
             "batch_index": int, "group": int, "slot": int, "learner": int, "rng": dict,
             "policy": dict, "chance": list, "steps": dict, "returns": list}
_STEP_KEYS = ("player", "legal", "action", "regret_policy", "behaviour")
# Within one step, which field is named first when several differ.
# Inputs come before what is derived from them (behaviour from mixed, mixed from lambda).
_PRIORITY = {"slot": -2, "learner": -1, "chance": 0, "action": 1, "player": 2,
             "legal_mask": 3, "regret_policy": 4, "regret": 5, "actor": 6, "logits": 7,
             "lambda_idx": 8, "lambda": 9, "mixed": 10, "behaviour": 12, "returns": 99}


def _parse_line(text: str, path: str, lineno: int) -> dict:
  if not text.endswith("\n"):
    raise ReplayError(path, lineno, "truncated line (no newline at the end)")
  try:
    rec = json.loads(text)
  except ValueError as e:
    raise ReplayError(path, lineno, f"corrupt JSON ({e})") from None
  if not isinstance(rec, dict):
    raise ReplayError(path, lineno, "a line must be a JSON object")
  fmt = rec.get("format")
  if fmt != FORMAT:
    raise ReplayError(path, lineno, f"unknown format version {fmt!r}; expected {FORMAT!r}")
  for k, typ in _REQUIRED.items():
    if k not in rec:
      raise ReplayError(path, lineno, f"missing field {k!r}")
    if not isinstance(rec[k], typ) or isinstance(rec[k], bool):
      raise ReplayError(path, lineno, f"field {k!r} must be a {typ.__name__}")
  for k in ("file", "sha256"):
    if not isinstance(rec["policy"].get(k), str):
      raise ReplayError(path, lineno, f"missing field 'policy.{k}'")
  if not isinstance(rec["rng"].get("sampler"), dict):
    raise ReplayError(path, lineno, "missing field 'rng.sampler'")
  steps = rec["steps"]
  for k in _STEP_KEYS:
    if not isinstance(steps.get(k), list):
      raise ReplayError(path, lineno, f"missing field 'steps.{k}'")
  n = len(steps["action"])
  for k, v in steps.items():
    if not isinstance(v, list) or len(v) != n:
      raise ReplayError(path, lineno, f"field 'steps.{k}' must be a list of {n} entries")
  return rec


def _iter_lines(path: str):
  """(line number, text) of a replay file; corrupt compressed data is a ReplayError."""
  lineno = 0
  try:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
      for text in f:
        lineno += 1
        yield lineno, text
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise ReplayError(path, lineno + 1, f"unreadable or truncated file ({type(e).__name__}: "
                      f"{e})") from None


class _Policy:
  """Networks of one policy file, rebuilt for per-row recomputation and batch regeneration."""

  def __init__(self, path: str, ck: dict):
    from armac_spiel.config import from_dict
    from armac_spiel.networks import MLP
    from games import load_game
    self.path, self.ck = path, ck
    self.cfg = from_dict(ck["config"])
    self.sgame = sg = load_game(ck["game"])
    self.regret = MLP(sg.info_state_size, self.cfg.regret_hidden, sg.num_actions)
    self.regret.load_state_dict(ck["params"]["regret"])
    self.actor = MLP(sg.info_state_size, self.cfg.actor_hidden, sg.num_actions)
    self.actor.load_state_dict(ck["params"]["actor"])
    bank = ck["params"]["bank"]
    self.rows = {s: k for k, s in enumerate(bank["slots"])}
    self.bank_w, self.bank_b = bank["weights"], bank["biases"]
    self.slots = ck["slots"]
    self.eps = float(ck["explore_eps"])
    self.per = self.cfg.episodes_per_epoch // self.cfg.groups_per_epoch
    self._regen = None
    self._learners = None

  def learner(self, batch_index: int) -> int:
    """The learning player the trainer assigns to this batch index (armac.learner_ids)."""
    if self._learners is None:
      from armac_spiel.armac import learner_ids
      bank = self.ck["params"]["bank"]
      bank_epoch = dict(zip(bank["slots"], bank["epoch"]))
      ep = torch.tensor([self.ck["epoch"] if s < 0 else bank_epoch.get(s, -1)
                         for s in self.slots])
      self._learners = learner_ids(self.cfg, ep, self.sgame.num_players)
    return int(self._learners[batch_index])

  @torch.no_grad()
  def regret_policy(self, slot: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from armac_spiel.networks import regret_matching
    if slot < 0:
      w = self.regret(x)
    else:
      k = self.rows[slot]
      h = x
      for i, (wt, b) in enumerate(zip(self.bank_w, self.bank_b)):
        h = h @ wt[k].T + b[k]
        if i < len(self.bank_w) - 1:
          h = torch.relu(h)
      w = h
    return regret_matching(w, mask)

  def regenerate(self) -> dict[int, dict]:
    """Every episode of the batch, sampled again from the stored RNG and network states."""
    if self._regen is None:
      self._regen = _regenerate(self.ck)
    return self._regen


def _regenerate(ck: dict) -> dict[int, dict]:
  from armac_spiel.armac import ARMAC
  from armac_spiel.config import from_dict
  cfg = from_dict(ck["config"])
  p = ck["params"]
  scheduler = None
  if p["scheduler"] is not None:
    scheduler = _build_scheduler(ck, cfg)
  b = cfg.episodes_per_epoch
  cap = _Capture(list(range(b)), b)

  class _Rec:
    def before_sample(self, *a):
      pass

    def on_step(self, learner, batch, outputs):
      cap.on_step(batch, outputs)

    def after_sample(self, learner, traj, *a):
      cap.traj = traj

  learner = ARMAC(ck["game"], cfg, ck["seed"], device="cpu", scheduler=scheduler,
                  recorder=_Rec())
  learner.regret.load_state_dict(p["regret"])
  learner.actor.load_state_dict(p["actor"])
  if "critic" in p:
    learner.critic.load_state_dict(p["critic"])
  bank = p["bank"]
  with torch.no_grad():
    for k, s in enumerate(bank["slots"]):
      for i, w in enumerate(bank["weights"]):
        learner.bank.weights["regret"][i][s] = w[k]
        learner.bank.biases["regret"][i][s] = bank["biases"][i][k]
      learner.bank.epoch[s] = bank["epoch"][k]
  learner.bank.size = max(bank["slots"], default=-1) + 1
  learner.epoch, learner.episodes = ck["epoch"], ck["episodes"]
  learner.sampler.set_rng_state(ck["sampler_rng"])
  if scheduler is not None:
    scheduler.load_state_dict(p["scheduler"])
  learner._sample(torch.tensor(ck["slots"], dtype=torch.long))
  return {i: cap.episode(cap.traj, i) for i in range(b)}


def _build_scheduler(ck: dict, cfg):
  """The run's scheduler, rebuilt through armac_spiel.scheduler_glue."""
  from armac_spiel import scheduler_glue
  extra = ck.get("extra_config") or {}
  suite = extra.get("scheduler_suite")
  if suite is not None:
    from armac_spiel.scheduler.config import SchedulerSuiteConfig
    suite = SchedulerSuiteConfig.from_dict(suite)
  make = scheduler_glue.scheduler_factory(suite, extra.get("scheduler_mode",
                                                          cfg.scheduler_mode))
  sched = make(ck["game"], ck["seed"], "cpu")
  if sched is None:
    raise RuntimeError("the policy file holds scheduler state but "
                       "armac_spiel.scheduler_glue.scheduler_factory builds no scheduler")
  return sched


def _load_policy(replay_dir: str, rec: dict, path: str, lineno: int, cache: dict) -> _Policy:
  name = rec["policy"]["file"]
  if os.path.basename(name) != name or not _POLICY_RE.match(name):
    raise ReplayError(path, lineno, f"bad policy file name {name!r}")
  if name not in cache:
    full = os.path.join(replay_dir, name)
    if not os.path.exists(full):
      raise ReplayError(path, lineno, f"policy checkpoint {name} is missing")
    try:
      ck = torch.load(full, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for corrupt files
      raise ReplayError(path, lineno, f"policy checkpoint {name} is unreadable "
                        f"({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or ck.get("format") != POLICY_FORMAT:
      fmt = ck.get("format") if isinstance(ck, dict) else None
      raise ReplayError(path, lineno, f"policy checkpoint {name} has unknown format {fmt!r}")
    try:
      digest = params_hash(ck["params"])
    except KeyError:
      raise ReplayError(path, lineno, f"policy checkpoint {name} has no parameters") from None
    if digest != ck.get("sha256"):
      raise ReplayError(path, lineno, f"policy checkpoint {name} was altered: parameter "
                        f"hash {digest[:12]} != stored {str(ck.get('sha256'))[:12]}")
    try:
      cache[name] = _Policy(full, ck)
    except Exception as e:
      raise ReplayError(path, lineno, f"policy checkpoint {name} cannot be rebuilt "
                        f"({type(e).__name__}: {e})") from None
  pol = cache[name]
  ck = pol.ck
  if rec["policy"]["sha256"] != ck["sha256"]:
    raise ReplayError(path, lineno, f"parameter hash {rec['policy']['sha256'][:12]} does not "
                      f"match policy checkpoint {name} ({ck['sha256'][:12]})")
  for k in ("game", "seed", "epoch"):
    if rec[k] != ck[k]:
      raise ReplayError(path, lineno, f"{k} {rec[k]!r} differs from policy checkpoint {name} "
                        f"({ck[k]!r})")
  return pol


class _EpisodeCheck:
  """Collects the differences of one episode; the earliest (step, priority) is named."""

  def __init__(self, tol: float):
    self.tol = tol
    self.found: list[tuple[int, int, str, str]] = []
    self.max_dev = 0.0

  def fail(self, step: int, field: str, detail: str) -> None:
    self.found.append((step, _PRIORITY.get(field, 11), field, detail))

  def close(self, step: int, field: str, got, want) -> None:
    a = torch.as_tensor(got, dtype=torch.float32)
    b = torch.as_tensor(want, dtype=torch.float32)
    if a.shape != b.shape:
      self.fail(step, field, f"shape {tuple(a.shape)} != {tuple(b.shape)}")
      return
    dev = float((a - b).abs().max()) if a.numel() else 0.0
    if not np.isfinite(dev):
      self.fail(step, field, "non-finite value")
      return
    self.max_dev = max(self.max_dev, dev)
    if dev > self.tol:
      self.fail(step, field, f"max abs deviation {dev:.3g} > {self.tol:g}")

  def first(self):
    return min(self.found) if self.found else None


def _check_episode(rec: dict, pol: _Policy, chk: _EpisodeCheck) -> None:
  """Replays one episode on pyspiel and compares every recomputed output."""
  from armac_spiel.networks import masked_softmax
  sg = pol.sgame
  n_players, a_dim = sg.num_players, sg.num_actions
  i, g = rec["batch_index"], rec["group"]
  if not 0 <= i < pol.cfg.episodes_per_epoch or g != i // pol.per:
    chk.fail(0, "slot", f"batch index {i} / group {g} do not fit the epoch's batch")
    return
  if rec["slot"] != pol.slots[g]:
    chk.fail(0, "slot", f"slot {rec['slot']} != policy file's slot {pol.slots[g]}")
  want = pol.learner(i)
  if rec["learner"] != want:
    chk.fail(0, "learner", f"learner {rec['learner']} != {want} ({LEARNER_RULE})")
  steps, chance = rec["steps"], rec["chance"]
  n = len(steps["action"])
  extras = [k for k in steps if k not in (*_STEP_KEYS,)]
  state = sg.new_initial_state()
  ci = t = 0
  chance_step = []
  ok = True
  while not state.is_terminal():
    if state.is_chance_node():
      legal_c = [o for o, _ in state.chance_outcomes()]
      if ci >= len(chance) or chance[ci] not in legal_c:
        chk.fail(t, "chance", f"chance outcome {ci} is missing or illegal")
        ok = False
        break
      state.apply_action(chance[ci])
      chance_step.append(t)
      ci += 1
      continue
    if t >= n:
      chk.fail(t, "action", f"the episode has {n} steps but the game is not over")
      ok = False
      break
    p = state.current_player()
    if steps["player"][t] != p:
      chk.fail(t, "player", f"player {steps['player'][t]} != {p}")
      ok = False
      break
    legal = state.legal_actions()
    if steps["legal"][t] != legal:
      chk.fail(t, "legal_mask", f"legal actions {steps['legal'][t]} != {legal}")
      ok = False
      break
    x = torch.tensor([state.information_state_tensor(p)], dtype=torch.float32)
    m = torch.zeros(1, a_dim, dtype=torch.bool)
    m[0, legal] = True
    pi_j = pol.regret_policy(rec["slot"], x, m)[0]
    chk.close(t, "regret_policy", steps["regret_policy"][t], pi_j)
    if "regret" in steps:  # the scheduler's inputs: live RM(W) and the actor's policy
      chk.close(t, "regret", steps["regret"][t], pol.regret_policy(-1, x, m)[0])
    if "actor" in steps:
      chk.close(t, "actor", steps["actor"][t], masked_softmax(pol.actor(x), m)[0])
    if p == rec["learner"]:
      base = pi_j
      if "mixed" in steps:
        base = torch.as_tensor(steps["mixed"][t], dtype=torch.float32)
      uni = m[0].float() / m[0].float().sum()
      want = (1 - pol.eps) * base + pol.eps * uni
    else:
      want = pi_j
    chk.close(t, "behaviour", steps["behaviour"][t], want)
    a = steps["action"][t]
    if not isinstance(a, int) or a not in legal:
      chk.fail(t, "action", f"action {a} is illegal (legal: {legal})")
      ok = False
      break
    state.apply_action(a)
    t += 1
  if ok:
    if ci != len(chance):
      chk.fail(t, "chance", f"{len(chance) - ci} chance outcomes after the game ended")
    if t != n:
      chk.fail(t, "action", f"the game ended after {t} of {n} steps")
    else:
      chk.close(n, "returns", rec["returns"], state.returns())
  # Regeneration: the same batch sampled again from the stored RNG and network states.
  regen = pol.regenerate()[i]
  div = n + 1  # first step where the regenerated episode leaves the recorded one
  for k, (c_rec, c_new) in enumerate(zip(chance + [None], regen["chance"] + [None])):
    if c_rec != c_new:
      s = chance_step[k] if k < len(chance_step) else t
      chk.fail(s, "chance", f"chance outcome {k}: recorded {c_rec}, regenerated {c_new}")
      div = min(div, s)
      break
  for k, (a_rec, a_new) in enumerate(zip(steps["action"] + [None],
                                         regen["steps"]["action"] + [None])):
    if a_rec != a_new:
      chk.fail(k, "action", f"action {k}: recorded {a_rec}, regenerated {a_new}")
      div = min(div, k + 1)
      break
  rs = regen["steps"]
  for k in ("player", "legal", *extras, "regret_policy", "behaviour"):
    if k not in rs:
      chk.fail(0, k, f"field {k!r} is recorded but the rebuilt learner does not produce it")
      continue
    for s in range(min(div, n, len(rs[k]))):
      got, want = steps[k][s], rs[k][s]
      if k in ("player", "legal"):
        if got != want:
          chk.fail(s, "player" if k == "player" else "legal_mask", f"{got} != {want}")
      elif _is_int(want):
        if got != want:
          chk.fail(s, k, f"recorded {got}, regenerated {want}")
      else:
        chk.close(s, k, got, want)
  for k in rs:
    if k not in steps and k != "action":
      chk.fail(0, k, f"the rebuilt learner produces {k!r} but it was not recorded")
  if div > n:
    chk.close(n, "returns", rec["returns"], regen["returns"])


def _is_int(x) -> bool:
  if isinstance(x, list):
    return all(_is_int(v) for v in x)
  return isinstance(x, int)


def verify(replay_dir: str, tolerance: float = 1e-6) -> VerifyResult:
  """Checks every recorded episode of `replay_dir`; raises ReplayError on a bad file."""
  if not os.path.isdir(replay_dir):
    raise ReplayError(replay_dir, None, "not a directory")
  files = replay_files(replay_dir)
  if not files:
    raise ReplayError(replay_dir, None, "no replay-*.jsonl[.gz] files")
  cache: dict[str, _Policy] = {}
  checked, max_dev, first = 0, 0.0, None
  for path in files:
    for lineno, text in _iter_lines(path):
      rec = _parse_line(text, path, lineno)
      pol = _load_policy(replay_dir, rec, path, lineno, cache)
      chk = _EpisodeCheck(tolerance)
      try:
        with torch.no_grad():
          _check_episode(rec, pol, chk)
      except ReplayError:
        raise
      except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
        raise ReplayError(path, lineno, f"cannot replay the episode ({type(e).__name__}: "
                          f"{e})") from None
      checked += 1
      max_dev = max(max_dev, chk.max_dev)
      f = chk.first()
      if f is not None and first is None:
        first = Mismatch(rec["episode"], f[0], f[2], os.path.basename(path), lineno, f[3])
  return VerifyResult(checked, max_dev, first)
