"""Deterministic replay verification.

`verify` rebuilds the learner from each policy file (checking the hash), replays every
episode on a pyspiel state from its chance outcomes and actions (checking legality, players,
legal masks and returns), recomputes pi_j through the episode's snapshot, the behaviour
(epsilon exploration included) and the scheduler's inputs from pyspiel's information-state
tensors, and regenerates each recorded batch from its RNG states with the rebuilt learner,
which checks the chance outcomes, actions and scheduler outputs.

Bit for bit. A float32 matrix product sums in an order that depends on the batch shape: a
row run alone can differ from the same row inside a batch in the last bits, and the
difference grows with the weights (past 1e-6 in pi_j within the first epoch of a 30 s Leduc
run). So every recomputation runs on a batch of the learner's shape with each row at the
learner's place (`ARMAC.sample_episodes`: the (B, D) batch through the groups' snapshots, or, on
the compiled tree with every group on the live net, one row per distinct information-state
id of the whole batch, in id order; the scheduler: the (R, D) rows of the step); the other
rows are zeros, which does not change a row's result. Whether a row's bits depend on the
batch's row count depends on the BLAS kernel: on one AVX2 machine they did not for these
shapes, under `MKL_CBWR=COMPATIBLE` they do (a verifier that used the (B, D) batch where the
learner ran the distinct ids failed tests/test_replay.py there, as on the CI machine), and
tests/test_replay.py checks the shapes on any machine with a net whose output moves with
its row count. A record verified on the machine that wrote it matches exactly
(`max_abs_deviation` 0). Verification runs on the CPU: a run recorded on a GPU can differ in
the last bits, which `tolerance` (default 1e-6) admits, and an action whose uniform falls
within ~1e-7 of a CDF boundary could in principle be drawn differently.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os

import numpy as np
import torch

from armac_spiel.armac import ARMAC, CURRENT, learner_ids
from armac_spiel.config import from_dict
from armac_spiel.networks import masked_softmax, regret_matching, uniform_policy
from armac_spiel.safe_load import UnsafeFileError, load_tensor_file
from armac_spiel.recording.format import (FORMAT, LEARNER_RULE, POLICY_FORMAT, POLICY_RE,
                                          STEP_KEYS, Capture, ReplayError, params_hash,
                                          replay_files)
from armac_spiel.scheduler import make_scheduler
from games import infostate_table, load_game


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
  """One policy file: the learner rebuilt from it, and its batch regenerated on demand."""

  def __init__(self, path: str, ck: dict):
    self.path, self.ck = path, ck
    self.cfg = from_dict(ck["config"])
    self.sgame = load_game(ck["game"])
    self.slots = ck["slots"]
    self.eps = float(ck["explore_eps"])
    self.per = self.cfg.episodes_per_epoch // self.cfg.groups_per_epoch
    self.net, self.alive, self.sids = _rebuild(ck), None, {}
    # With a tree, the learner's sampling forward on the live net goes by information-state
    # id (ARMAC.sample_episodes -> unique_forward: one row per distinct id of the whole batch, in id
    # order). A recorded row's id comes from pyspiel's information-state string, as the tree
    # compiled it; the batch's other ids (`sids`, from the regenerated batch) only set the
    # shape and the row's place.
    self.sid_of = None
    if self.net.tree is not None:
      self.sid_of = infostate_table(ck["game"]).index  # the tree's information-state ids
    self._learners = None

  def learner(self, batch_index: int) -> int:
    """The learning player the trainer assigns to this batch index (armac.learner_ids)."""
    if self._learners is None:
      bank = self.ck["params"]["bank"]
      bank_epoch = dict(zip(bank["slots"], bank["epoch"]))
      ep = torch.tensor([self.ck["epoch"] if s < 0 else bank_epoch.get(s, -1)
                         for s in self.slots])
      self._learners = learner_ids(self.cfg, ep, self.sgame.num_players)
    return int(self._learners[batch_index])

  def regenerate(self, chosen: list[int]) -> dict[int, dict]:
    """The episodes `chosen` (batch indices) of the batch, sampled again from the stored RNG
    and network states; `alive[t]` becomes the batch indices at decision step t, in the
    order the sampler passed them to the policy."""
    b = self.cfg.episodes_per_epoch
    cap, alive, sids = Capture(sorted(set(chosen)), b), {}, {}
    net = self.net

    class _Rec:
      def before_sample(self, *a):
        pass

      def on_step(self, learner, batch, outputs):
        alive[int(batch.step)] = batch.episode.tolist()
        if batch.infostate is not None:
          sids[int(batch.step)] = set(batch.infostate.tolist())
        cap.on_step(batch, outputs)

      def after_sample(self, learner, traj, *a):
        cap.traj = traj

    net.recorder = _Rec()
    try:
      net.sampler.set_rng_state(self.ck["sampler_rng"])
      if net.scheduler is not None:
        net.scheduler.load_state_dict(self.ck["params"]["scheduler"])
      net.sample_episodes(torch.tensor(self.slots, dtype=torch.long))
    finally:
      net.recorder = None
    self.alive, self.sids = alive, sids
    return {i: cap.episode(cap.traj, i) for i in cap.chosen}


def _rebuild(ck: dict):
  """The ARMAC learner of a policy file (CPU): networks, snapshot rows, counters."""
  cfg = from_dict(ck["config"])
  p = ck["params"]
  scheduler = None
  if p["scheduler"] is not None:
    scheduler = _build_scheduler(ck, cfg)
  learner = ARMAC(ck["game"], cfg, ck["seed"], device="cpu", scheduler=scheduler)
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
  return learner


def _build_scheduler(ck: dict, cfg):
  """The run's scheduler, rebuilt by armac_spiel.scheduler.make_scheduler."""
  suite = (ck.get("extra_config") or {}).get("scheduler_suite")
  sched = None if suite is None else make_scheduler(suite, ck["game"], ck["seed"], "cpu")
  if sched is None:
    raise RuntimeError("the policy file holds scheduler state but its scheduler_suite "
                       "builds no scheduler")
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
      ck = load_tensor_file(full, "policy checkpoint", hint=(
          "replay policy files hold plain data only; one written by an older armac-spiel "
          "version cannot be verified: record the run again with --record_replay"))
    except UnsafeFileError as e:
      raise ReplayError(path, lineno, str(e)) from None
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
    a = np.asarray(got, dtype=np.float32)
    b = np.asarray(want, dtype=np.float32)
    if a.shape != b.shape:
      self.fail(step, field, f"shape {tuple(a.shape)} != {tuple(b.shape)}")
      return
    dev = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
    if not np.isfinite(dev):
      self.fail(step, field, "non-finite value")
      return
    self.max_dev = max(self.max_dev, dev)
    if dev > self.tol:
      self.fail(step, field, f"max abs deviation {dev:.3g} > {self.tol:g}")

  def first(self):
    return min(self.found) if self.found else None


@dataclasses.dataclass
class _Replayed:
  """One episode replayed on pyspiel: the inputs of its decision steps, for recomputation."""
  rec: dict
  chk: _EpisodeCheck
  x: list = dataclasses.field(default_factory=list)     # (D,) information-state tensors
  mask: list = dataclasses.field(default_factory=list)  # legal action ids
  sid: list = dataclasses.field(default_factory=list)   # information-state ids (tree), or -1
  chance_step: list = dataclasses.field(default_factory=list)
  t: int = 0          # decision steps replayed
  usable: bool = True  # batch index and group fit the policy file


def _replay(rec: dict, pol: _Policy, chk: _EpisodeCheck) -> _Replayed:
  """Replays one episode on pyspiel, checking everything that needs no network."""
  sg = pol.sgame
  out = _Replayed(rec, chk)
  i, g = rec["batch_index"], rec["group"]
  if not 0 <= i < pol.cfg.episodes_per_epoch or g != i // pol.per:
    chk.fail(0, "slot", f"batch index {i} / group {g} do not fit the epoch's batch")
    out.usable = False
    return out
  if rec["slot"] != pol.slots[g]:
    chk.fail(0, "slot", f"slot {rec['slot']} != policy file's slot {pol.slots[g]}")
  want = pol.learner(i)
  if rec["learner"] != want:
    chk.fail(0, "learner", f"learner {rec['learner']} != {want} ({LEARNER_RULE})")
  steps, chance = rec["steps"], rec["chance"]
  n = len(steps["action"])
  state = sg.new_initial_state()
  ci = t = 0
  ok = True
  while not state.is_terminal():
    if state.is_chance_node():
      legal_c = [o for o, _ in state.chance_outcomes()]
      if ci >= len(chance) or chance[ci] not in legal_c:
        chk.fail(t, "chance", f"chance outcome {ci} is missing or illegal")
        ok = False
        break
      state.apply_action(chance[ci])
      out.chance_step.append(t)
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
    out.x.append(state.information_state_tensor(p))
    if pol.sid_of is not None:
      out.sid.append(pol.sid_of.get(state.information_state_string(p), -1))
    out.mask.append(legal)
    a = steps["action"][t]
    if not isinstance(a, int) or a not in legal:
      chk.fail(t, "action", f"action {a} is illegal (legal: {legal})")
      ok = False
      break
    state.apply_action(a)
    t += 1
  out.t = t
  if ok:
    if ci != len(chance):
      chk.fail(t, "chance", f"{len(chance) - ci} chance outcomes after the game ended")
    if t != n:
      chk.fail(t, "action", f"the game ended after {t} of {n} steps")
    else:
      chk.close(n, "returns", rec["returns"], state.returns())
  return out


@torch.no_grad()
def _recompute(pol: _Policy, eps_: list[_Replayed]) -> None:
  """pi_j, the behaviour and the scheduler's inputs of every replayed step, computed on
  batches of the shapes the learner used (`ARMAC.sample_episodes`), each row at its own place:
  float32 matrix products sum in an order that depends on the batch shape, so a row run
  alone can differ from the learner's value in the last bits. Fills `r.checks`."""
  net, cfg, sg = pol.net, pol.cfg, pol.sgame
  b, g, d, a_dim = cfg.episodes_per_epoch, cfg.groups_per_epoch, sg.info_state_size, sg.num_actions
  slots = torch.tensor(pol.slots, dtype=torch.long)
  sched = any("regret" in r.rec["steps"] or "actor" in r.rec["steps"] for r in eps_)
  for t in range(max((len(r.x) for r in eps_), default=0)):
    rows = [r for r in eps_ if len(r.x) > t]
    idx = torch.tensor([r.rec["batch_index"] for r in rows])
    xs = torch.tensor([r.x[t] for r in rows], dtype=torch.float32).reshape(len(rows), d)
    ms = torch.zeros(len(rows), a_dim, dtype=torch.bool)
    for k, r in enumerate(rows):
      ms[k, r.mask[t]] = True
    if pol.sid_of is not None and (net.bank.size == 0 or bool((slots == CURRENT).all())):
      # unique_forward's batch: the distinct ids of the step (-1: the zero rows of finished
      # episodes) in order, each recorded row at its id's place, zeros elsewhere.
      mine = [r.sid[t] for r in rows]
      present = pol.sids.get(t, set()) | set(mine)
      if pol.alive is None or len(pol.alive.get(t, ())) < b:
        present.add(-1)
      place = {s: k for k, s in enumerate(sorted(present))}
      pos = torch.tensor([place[s] for s in mine], dtype=torch.long)
      xu = torch.zeros(len(place), d)
      xu[pos] = xs
      pi_j = regret_matching(net.regret(xu)[pos], ms)
    else:  # policy_fn of ARMAC.sample_episodes: the whole (B, D) batch through group_forward
      x = torch.zeros(b, d)
      m = torch.ones(b, a_dim, dtype=torch.bool)
      x[idx], m[idx] = xs, ms
      w = net.group_forward("regret", slots, x.view(g, pol.per, -1)).view(b, -1)
      pi_j = regret_matching(w, m)[idx]
    for k, r in enumerate(rows):
      r.chk.close(t, "regret_policy", r.rec["steps"]["regret_policy"][t], pi_j[k].numpy())
    # The scheduler's inputs: live RM(W) and the actor on the step's (R, D) rows.
    if sched and pol.alive is not None and t in pol.alive:
      pos = {e: k for k, e in enumerate(pol.alive[t])}
      here = [(k, pos[int(i)]) for k, i in enumerate(idx.tolist()) if int(i) in pos]
      if here:
        rr = len(pol.alive[t])
        ks = torch.tensor([k for k, _ in here])
        ps = torch.tensor([p for _, p in here])
        xr = torch.zeros(rr, d)
        mr = torch.ones(rr, a_dim, dtype=torch.bool)
        xr[ps], mr[ps] = xs[ks], ms[ks]
        reg = regret_matching(net.regret(xr), mr)[ps]
        act = masked_softmax(net.actor(xr), mr)[ps]
        for j, k in enumerate(ks.tolist()):
          st = rows[k].rec["steps"]
          if "regret" in st:
            rows[k].chk.close(t, "regret", st["regret"][t], reg[j].numpy())
          if "actor" in st:
            rows[k].chk.close(t, "actor", st["actor"][t], act[j].numpy())
    # Behaviour: (1 - eps) * base + eps * uniform at the learner's steps, pi_j elsewhere.
    learner = torch.tensor([r.rec["steps"]["player"][t] == r.rec["learner"] for r in rows])
    base = pi_j.clone()
    for k, r in enumerate(rows):
      if learner[k] and "mixed" in r.rec["steps"]:
        base[k] = torch.as_tensor(r.rec["steps"]["mixed"][t], dtype=torch.float32)
    explore = (1 - pol.eps) * base + pol.eps * uniform_policy(ms)
    want = torch.where(learner.unsqueeze(1), explore, pi_j)
    for k, r in enumerate(rows):
      r.chk.close(t, "behaviour", r.rec["steps"]["behaviour"][t], want[k].numpy())


def _compare_regen(r: _Replayed, regen: dict) -> None:
  """The recorded episode against the same batch row sampled again."""
  rec, chk = r.rec, r.chk
  steps, chance = rec["steps"], rec["chance"]
  n = len(steps["action"])
  extras = [k for k in steps if k not in STEP_KEYS]
  div = n + 1  # first step where the regenerated episode leaves the recorded one
  for k, (c_rec, c_new) in enumerate(zip(chance + [None], regen["chance"] + [None])):
    if c_rec != c_new:
      s = r.chance_step[k] if k < len(r.chance_step) else r.t
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


def _check_batch(pol: _Policy, lines: list[tuple[str, int, dict]], tol: float):
  """Checks the recorded episodes of one policy file; yields (path, line, rec, check)."""
  done = []
  for path, lineno, rec in lines:
    chk = _EpisodeCheck(tol)
    try:
      done.append((path, lineno, _replay(rec, pol, chk)))
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
      raise ReplayError(path, lineno, f"cannot replay the episode ({type(e).__name__}: "
                        f"{e})") from None
  use = [r for _, _, r in done if r.usable]
  path, lineno = lines[0][:2]
  try:
    regen = pol.regenerate([r.rec["batch_index"] for r in use])
    _recompute(pol, use)
    for r in use:
      _compare_regen(r, regen[r.rec["batch_index"]])
  except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
    raise ReplayError(path, lineno, f"cannot recompute the batch of {pol.ck['epoch']} "
                      f"({type(e).__name__}: {e})") from None
  return done


def verify(replay_dir: str, tolerance: float = 1e-6) -> VerifyResult:
  """Checks every recorded episode of `replay_dir`; raises ReplayError on a bad file.

  The recomputed floats use batches of the learner's shapes, so a record verified on the
  machine (and device) that wrote it matches bit for bit (`max_abs_deviation` 0).
  """
  if not os.path.isdir(replay_dir):
    raise ReplayError(replay_dir, None, "not a directory")
  files = replay_files(replay_dir)
  if not files:
    raise ReplayError(replay_dir, None, "no replay-*.jsonl[.gz] files")
  checked, max_dev, first = 0, 0.0, None

  def flush(lines):
    nonlocal checked, max_dev, first
    if not lines:
      return
    cache: dict[str, _Policy] = {}  # one policy file per batch of lines
    for path, lineno, rec in lines:
      pol = _load_policy(replay_dir, rec, path, lineno, cache)
    with torch.no_grad():
      done = _check_batch(pol, lines, tolerance)
    for path, lineno, r in done:
      checked += 1
      max_dev = max(max_dev, r.chk.max_dev)
      f = r.chk.first()
      if f is not None and first is None:
        first = Mismatch(r.rec["episode"], f[0], f[2], os.path.basename(path), lineno, f[3])

  batch: list[tuple[str, int, dict]] = []
  for path in files:
    for lineno, text in _iter_lines(path):
      rec = _parse_line(text, path, lineno)
      if batch and rec["policy"]["file"] != batch[-1][2]["policy"]["file"]:
        flush(batch)
        batch = []
      batch.append((path, lineno, rec))
  flush(batch)
  return VerifyResult(checked, max_dev, first)
