"""Deterministic replay verification.

`verify` rebuilds the networks from the policy files (checking the hash), replays every
episode on a pyspiel state from its chance outcomes and actions (checking legality, players
and legal masks), recomputes pi_j through the episode's snapshot, the behaviour (epsilon
exploration included) and the returns, and regenerates each recorded batch from its RNG
states with the rebuilt learner, which checks the chance outcomes, actions and scheduler
outputs. Regeneration runs on the CPU: a run recorded on a GPU matches to float tolerance,
and an action whose uniform falls within ~1e-7 of a CDF boundary could in principle be drawn
differently.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import tempfile

import numpy as np
import torch

from armac_spiel.recording.format import (FORMAT, LEARNER_RULE, POLICY_FORMAT, POLICY_RE,
                                          STEP_KEYS, Capture, ReplayError, params_hash,
                                          replay_files)


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
  for k in STEP_KEYS:
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
  cap = Capture(list(range(b)), b)

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
  from armac_spiel.trainer import RunSpec
  extra = ck.get("extra_config") or {}
  suite = extra.get("scheduler_suite")
  if suite is not None:
    from armac_spiel.scheduler.config import SchedulerSuiteConfig
    suite = SchedulerSuiteConfig.from_dict(suite)
  make = scheduler_glue.scheduler_factory(suite)
  with tempfile.TemporaryDirectory() as d:
    spec = RunSpec(ck["game"], cfg, ck["seed"], d, device="cpu", extra_config=dict(extra),
                   plot=False)
    sched = make(spec)
  if sched is None:
    raise RuntimeError("the policy file holds scheduler state but "
                       "armac_spiel.scheduler_glue.scheduler_factory builds no scheduler")
  return sched


def _load_policy(replay_dir: str, rec: dict, path: str, lineno: int, cache: dict) -> _Policy:
  name = rec["policy"]["file"]
  if os.path.basename(name) != name or not POLICY_RE.match(name):
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
  extras = [k for k in steps if k not in (*STEP_KEYS,)]
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
