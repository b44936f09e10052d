"""OpenSpiel's own algorithms behind one run interface, logging ARMAC's metrics schema.

- `cfr_plus`: CFR+ (Tammelin, arXiv 1407.5042), `pyspiel.CFRPlusSolver`. Regrets are clipped
  at zero, R^+_t(I, a) = max(0, R^+_{t-1}(I, a) + r_t(I, a)), with alternating updates and a
  linearly weighted average policy. One step = one iteration = one full tree traversal.
- `es_mccfr`: external-sampling Monte Carlo CFR (Lanctot et al., NeurIPS 2009, "Monte Carlo
  Sampling for Regret Minimization in Extensive Games"), `pyspiel.ExternalSamplingMCCFRSolver`
  with SIMPLE averaging (the opponent's current strategy is added to the average at the
  nodes it samples; ~128x faster than FULL on Leduc). One iteration walks the tree once per
  player, sampling chance and the opponents' actions and expanding all of the traverser's.
- `os_mccfr`: outcome-sampling Monte Carlo CFR (Lanctot et al., NeurIPS 2009),
  `pyspiel.OutcomeSamplingMCCFRSolver` (exploration epsilon 0.6, OpenSpiel's default). One
  iteration samples one episode per player: the traverser plays its epsilon-on-policy
  mixture, regrets are importance-weighted by 1 / (sample reach); the average policy is
  updated along the sampled episode.
- `deep_cfr`: Deep CFR (Brown et al., arXiv 1811.00164), OpenSpiel's PyTorch
  `DeepCFRSolver` driven one iteration at a time: per player `num_traversals`
  external-sampling traversals fill the advantage memory, then the advantage network is
  re-initialised and regressed on it with weight sqrt(t). The average policy is a strategy
  network trained on the strategy memory (weight sqrt(t)).
- `nfsp`: Neural Fictitious Self-Play (Heinrich & Silver, arXiv 1603.01121), OpenSpiel's
  PyTorch `NFSP` agents (one per player) on `rl_environment`: each plays its epsilon-greedy
  DQN best response with probability eta (anticipatory parameter), else its average-policy
  network, which is trained by supervised learning on its own best-response actions.

Units of `episodes` (cumulative):
- cfr_plus: full tree traversals, one per iteration (`episodes == iterations`);
- es_mccfr: sampled traversals, `num_players` per iteration;
- os_mccfr: sampled episodes, `num_players` per iteration;
- deep_cfr: sampled traversals, `num_players * num_traversals` per iteration;
- nfsp: played episodes.

Every call into OpenSpiel code that draws from the global Python/NumPy/torch generators
(Deep CFR and NFSP: sampling, buffers, network initialisation; OpenSpiel's constructors
also call `set_seed` on the global state) runs inside the baseline's private copy of those
generator states, so a fixed seed gives the same run regardless of what else runs in the
process, and evaluation never perturbs training.
"""

# OpenSpiel exposes no public per-iteration API for Deep CFR / NFSP internals.
# pylint: disable=protected-access

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pickle
import random
import time
from typing import Optional

import numpy as np
import pyspiel
import torch
from absl import logging

from armac_spiel import evaluation, run_io
from armac_spiel.atomic import atomic_write_text
from armac_spiel.policy_io import export_policy
from games import infostate_table, load_game


def _derive_seed(*parts: int) -> int:
  """A 31-bit seed from integers (independent streams per (seed, purpose, index))."""
  return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0]
             % 2**31)


class _GlobalRng:
  """A private copy of the Python, NumPy and torch global generator states, swapped in
  around calls into OpenSpiel code that uses the global generators."""

  def __init__(self, seed: int, cuda: bool = False):
    self._cuda = cuda and torch.cuda.is_available()
    outer = self._capture()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if self._cuda:
      torch.cuda.manual_seed_all(seed)
    self.state = self._capture()
    self._restore(outer)

  def _capture(self):
    cuda = torch.cuda.get_rng_state_all() if self._cuda else None
    return (random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

  def _restore(self, state) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
    if self._cuda and state[3] is not None:
      torch.cuda.set_rng_state_all(state[3])

  @contextlib.contextmanager
  def active(self):
    outer = self._capture()
    self._restore(self.state)
    try:
      yield
    finally:
      self.state = self._capture()
      self._restore(outer)


def _rebuild_buffer(cls, attrs: dict, capacity, rows):
  buf = cls.__new__(cls)
  buf.__dict__.update(attrs)
  full = type(rows)(*[np.empty((int(capacity), *r.shape[1:]), dtype=r.dtype) for r in rows])
  for dst, src in zip(full, rows):
    dst[:len(src)] = src
  buf.capacity, buf.experience = capacity, full
  return buf


class _TrimmingPickler(pickle.Pickler):
  """Pickles OpenSpiel's replay/reservoir buffers with their filled rows only (they
  preallocate `capacity` rows with np.empty)."""

  def reducer_override(self, obj):
    if (hasattr(obj, "experience") and hasattr(obj, "capacity") and
        type(obj).__module__.startswith("open_spiel.python.pytorch")):
      n = len(obj)
      attrs = {k: v for k, v in obj.__dict__.items() if k not in ("experience", "capacity")}
      rows = type(obj.experience)(*[np.array(x[:n]) for x in obj.experience])
      return _rebuild_buffer, (type(obj), attrs, obj.capacity, rows)
    return NotImplemented


def _dumps(obj) -> bytes:
  f = io.BytesIO()
  _TrimmingPickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
  return f.getvalue()


def _masked_normalise(probs: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
  """Rows restricted to legal actions and renormalised (uniform where nothing is left)."""
  probs = probs.double().clamp_min(0) * legal
  total = probs.sum(1, keepdim=True)
  uniform = legal.double() / legal.sum(1, keepdim=True)
  return torch.where(total > 0, probs / total.clamp_min(1e-300), uniform)


# ---------------------------------------------------------------------------------------
# Hyper-parameters (frozen; resolved values are written to config.json).


@dataclasses.dataclass(frozen=True)
class CFRPlusParams:
  pass


@dataclasses.dataclass(frozen=True)
class ESMCCFRParams:
  iterations_per_step: int = 100
  average_type: str = "simple"   # "simple" or "full"


@dataclasses.dataclass(frozen=True)
class OSMCCFRParams:
  iterations_per_step: int = 1000
  epsilon: float = 0.6               # exploration of the traverser's sampling policy


@dataclasses.dataclass(frozen=True)
class DeepCFRParams:
  """Near OpenSpiel's recommended Leduc settings (examples/deep_cfr_pytorch.py)."""
  policy_network_layers: tuple = (128, 128)
  advantage_network_layers: tuple = (128, 128)
  num_traversals: int = 1500          # per player per iteration
  learning_rate: float = 1e-3
  batch_size_advantage: int = 2048
  batch_size_strategy: int = 2048
  memory_capacity: int = 1_000_000
  policy_network_train_steps: int = 5000    # per evaluation (strategy net from scratch)
  advantage_network_train_steps: int = 750  # per player per iteration
  reinitialize_advantage_networks: bool = True


@dataclasses.dataclass(frozen=True)
class NFSPParams:
  """OpenSpiel's examples/nfsp_leduc_pytorch.py settings."""
  episodes_per_step: int = 100
  hidden_layers_sizes: tuple = (128,)
  replay_buffer_capacity: int = 200_000
  reservoir_buffer_capacity: int = 2_000_000
  min_buffer_size_to_learn: int = 1000
  anticipatory_param: float = 0.1
  batch_size: int = 128
  learn_every: int = 64
  rl_learning_rate: float = 0.01
  sl_learning_rate: float = 0.01
  optimizer_str: str = "sgd"
  loss_str: str = "mse"
  update_target_network_every: int = 19200
  discount_factor: float = 1.0
  epsilon_decay_duration: int = 20_000_000
  epsilon_start: float = 0.06
  epsilon_end: float = 0.001


def _resolve(params_cls, algo: str, hparams: dict):
  fields = {f.name: f for f in dataclasses.fields(params_cls)}
  unknown = sorted(set(hparams) - set(fields))
  if unknown:
    raise ValueError(f"{algo}: unknown hyper-parameter(s) {unknown}; allowed: "
                     f"{sorted(fields)}")
  resolved = {}
  for k, v in hparams.items():
    default = fields[k].default
    if isinstance(default, tuple):
      v = tuple(int(x) for x in v)
    elif isinstance(default, bool):
      v = bool(v)
    elif isinstance(default, int):
      if not isinstance(v, (int, float)) or isinstance(v, float) and not v.is_integer():
        raise ValueError(f"{algo}: hyper-parameter {k!r} must be an integer, got {v!r}")
      v = int(v)
      if v < 1:
        raise ValueError(f"{algo}: hyper-parameter {k!r} must be >= 1, got {v}")
    elif isinstance(default, float):
      v = float(v)
    resolved[k] = v
  return params_cls(**resolved)


# ---------------------------------------------------------------------------------------
# Baselines.


class Baseline:
  """One run interface: `train_step()`, `average_table()`, `state_dict()`,
  `load_state_dict()`, counters `episodes` (unit: `episode_unit`) and `iterations`."""

  name = ""
  episode_unit = ""
  params_cls = CFRPlusParams

  def __init__(self, game_string: str, seed: int, device: str = "cpu", **hparams):
    self.game_string = game_string
    self.sgame = load_game(game_string)
    self.seed = int(seed)
    self.device = device
    self.hp = _resolve(self.params_cls, self.name, hparams)
    self.episodes = 0
    self.iterations = 0
    self.eval_extras: dict = {}   # filled by average_table (e.g. the strategy-net loss)

  @property
  def hparams(self) -> dict:
    return dataclasses.asdict(self.hp)

  def train_step(self) -> dict:
    raise NotImplementedError

  def average_table(self) -> torch.Tensor:
    raise NotImplementedError

  def state_dict(self) -> dict:
    raise NotImplementedError(f"{self.name} has no checkpoint support")

  def load_state_dict(self, state: dict) -> None:
    raise NotImplementedError(f"{self.name} has no checkpoint support")

  def _counters(self) -> dict:
    return {"episodes": self.episodes, "iterations": self.iterations}

  def _load_counters(self, state: dict) -> None:
    self.episodes, self.iterations = int(state["episodes"]), int(state["iterations"])


class CFRPlus(Baseline):
  """pyspiel.CFRPlusSolver; deterministic, so a checkpoint is its iteration count and
  loading replays that many iterations (pickling the C++ solver does not round-trip)."""

  name = "cfr_plus"
  episode_unit = "full tree traversals (= iterations)"
  params_cls = CFRPlusParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    self._solver = pyspiel.CFRPlusSolver(self.sgame.game)

  def train_step(self) -> dict:
    self._solver.evaluate_and_update_policy()
    self.iterations += 1
    self.episodes += 1
    return {"iterations": 1, "episodes": 1}

  def average_table(self) -> torch.Tensor:
    # average_policy() points into the solver, which self keeps alive.
    return evaluation.tabularise(self.game_string, self._solver.average_policy())

  def state_dict(self) -> dict:
    return self._counters()

  def load_state_dict(self, state: dict) -> None:
    self._solver = pyspiel.CFRPlusSolver(self.sgame.game)
    for _ in range(int(state["iterations"])):
      self._solver.evaluate_and_update_policy()
    self._load_counters(state)


class ESMCCFR(Baseline):
  """pyspiel.ExternalSamplingMCCFRSolver (its own C++ generator, seeded with `seed`)."""

  name = "es_mccfr"
  episode_unit = "sampled traversals (num_players per iteration)"
  params_cls = ESMCCFRParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    kinds = {"simple": pyspiel.MCCFRAverageType.SIMPLE, "full": pyspiel.MCCFRAverageType.FULL}
    if self.hp.average_type not in kinds:
      raise ValueError(f"es_mccfr: average_type must be one of {sorted(kinds)}, got "
                       f"{self.hp.average_type!r}")
    self._solver = pyspiel.ExternalSamplingMCCFRSolver(
        self.sgame.game, _derive_seed(self.seed, 1), kinds[self.hp.average_type])

  def train_step(self) -> dict:
    n = self.hp.iterations_per_step
    for _ in range(n):
      self._solver.run_iteration()
    self.iterations += n
    self.episodes += n * self.sgame.num_players
    return {"iterations": n, "episodes": n * self.sgame.num_players}

  def average_table(self) -> torch.Tensor:
    return evaluation.tabularise(self.game_string, self._solver.average_policy())

  def state_dict(self) -> dict:
    # Pickling the C++ solver round-trips regrets, averages and its generator exactly.
    return {**self._counters(), "solver": pickle.dumps(self._solver)}

  def load_state_dict(self, state: dict) -> None:
    self._solver = pickle.loads(state["solver"])
    self._load_counters(state)


class OSMCCFR(Baseline):
  """pyspiel.OutcomeSamplingMCCFRSolver (its own C++ generator, seeded with `seed`)."""

  name = "os_mccfr"
  episode_unit = "sampled episodes (num_players per iteration)"
  params_cls = OSMCCFRParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    if not 0.0 < self.hp.epsilon <= 1.0:
      raise ValueError(f"os_mccfr: hyper-parameter 'epsilon' must be in (0, 1], got "
                       f"{self.hp.epsilon!r}")
    self._solver = pyspiel.OutcomeSamplingMCCFRSolver(
        self.sgame.game, self.hp.epsilon, _derive_seed(self.seed, 1))

  def train_step(self) -> dict:
    n = self.hp.iterations_per_step
    for _ in range(n):
      self._solver.run_iteration()
    self.iterations += n
    self.episodes += n * self.sgame.num_players
    return {"iterations": n, "episodes": n * self.sgame.num_players}

  def average_table(self) -> torch.Tensor:
    return evaluation.tabularise(self.game_string, self._solver.average_policy())

  def state_dict(self) -> dict:
    # Pickling the C++ solver round-trips regrets, averages and its generator exactly.
    return {**self._counters(), "solver": pickle.dumps(self._solver)}

  def load_state_dict(self, state: dict) -> None:
    self._solver = pickle.loads(state["solver"])
    self._load_counters(state)


class DeepCFR(Baseline):
  """OpenSpiel's DeepCFRSolver, one iteration per step (the body of its `solve()`).

  Evaluation re-initialises the solver's strategy network and trains it from scratch for
  `policy_network_train_steps` on the strategy memory, as `solve()` does once at the end
  (and as its `print_nash_convs` path does each iteration). The strategy network is not
  used by the traversals, so this does not change training; it runs in an evaluation
  generator stream seeded by (seed, iteration), and its cost counts as evaluation time.
  The strategy network's softmax covers all actions; the table keeps the legal ones,
  renormalised (OpenSpiel's `action_probabilities` returns them unnormalised).
  """

  name = "deep_cfr"
  episode_unit = "sampled traversals (num_players * num_traversals per iteration)"
  params_cls = DeepCFRParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    from open_spiel.python.pytorch import deep_cfr
    hp = self.hp
    self._rng = _GlobalRng(_derive_seed(self.seed, 2), cuda=str(device).startswith("cuda"))
    with self._rng.active():
      # Batch sizes must be set: with None, this OpenSpiel version trains on the whole
      # preallocated (np.empty) memory, uninitialised rows included.
      self._solver = deep_cfr.DeepCFRSolver(
          self.sgame.game,
          policy_network_layers=hp.policy_network_layers,
          advantage_network_layers=hp.advantage_network_layers,
          num_iterations=1,
          num_traversals=hp.num_traversals,
          learning_rate=hp.learning_rate,
          batch_size_advantage=hp.batch_size_advantage,
          batch_size_strategy=hp.batch_size_strategy,
          memory_capacity=hp.memory_capacity,
          policy_network_train_steps=hp.policy_network_train_steps,
          advantage_network_train_steps=hp.advantage_network_train_steps,
          reinitialize_advantage_networks=hp.reinitialize_advantage_networks,
          device=device,
          seed=_derive_seed(self.seed, 3))
    self._cache: Optional[tuple[int, torch.Tensor, dict]] = None

  def train_step(self) -> dict:
    s, hp = self._solver, self.hp
    out = {"iterations": 1, "episodes": hp.num_traversals * self.sgame.num_players}
    with self._rng.active():
      for p in range(self.sgame.num_players):
        for _ in range(hp.num_traversals):
          s._traverse_game_tree(s._root_node, p)
        if hp.reinitialize_advantage_networks:
          s._reinitialize_advantage_network(p)
        out[f"advantage_loss_{p}"] = s._learn_advantage_network(p)
      s._iteration += 1
    self.iterations += 1
    self.episodes += out["episodes"]
    return out

  def average_table(self) -> torch.Tensor:
    if self._cache is not None and self._cache[0] == self.iterations:
      self.eval_extras = dict(self._cache[2])
      return self._cache[1].clone()
    s = self._solver
    table = infostate_table(self.game_string)
    with _GlobalRng(_derive_seed(self.seed, 4, self.iterations)).active():
      s._reinitialize_policy_network()
      loss = s._learn_strategy_network()
      with torch.no_grad():
        probs = s._policy_network(table.tensors.to(s._device)).cpu()
    probs = evaluation.validate_table(self.game_string,
                                      _masked_normalise(probs, table.legal_mask))
    self.eval_extras = {"policy_loss": loss}
    self._cache = (self.iterations, probs, dict(self.eval_extras))
    return probs.clone()

  def state_dict(self) -> dict:
    return {**self._counters(), "rng": self._rng.state, "solver": _dumps(self._solver)}

  def load_state_dict(self, state: dict) -> None:
    self._solver = pickle.loads(state["solver"])
    self._rng.state = state["rng"]
    self._cache = None
    self._load_counters(state)


class NFSP(Baseline):
  """OpenSpiel's NFSP agents, `episodes_per_step` self-play episodes per step.

  The evaluated policy is each player's average-policy network (masked softmax over legal
  actions, as NFSP's `_act`), run in one batch over that player's information states.
  NFSP does not forward its seed to the inner DQN (whose Q-networks OpenSpiel always
  initialises with seed 42), so the Q-networks are re-initialised here from the run seed.
  """

  name = "nfsp"
  episode_unit = "played episodes"
  params_cls = NFSPParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    from open_spiel.python import rl_environment
    from open_spiel.python.pytorch import nfsp
    hp = self.hp
    self._rng = _GlobalRng(_derive_seed(self.seed, 5), cuda=str(device).startswith("cuda"))
    self._env = rl_environment.Environment(
        self.sgame.game,
        chance_event_sampler=rl_environment.ChanceEventSampler(_derive_seed(self.seed, 6)))
    kwargs = dict(
        replay_buffer_capacity=hp.replay_buffer_capacity,
        reservoir_buffer_capacity=hp.reservoir_buffer_capacity,
        min_buffer_size_to_learn=hp.min_buffer_size_to_learn,
        anticipatory_param=hp.anticipatory_param,
        batch_size=hp.batch_size,
        learn_every=hp.learn_every,
        rl_learning_rate=hp.rl_learning_rate,
        sl_learning_rate=hp.sl_learning_rate,
        optimizer_str=hp.optimizer_str,
        loss_str=hp.loss_str,
        update_target_network_every=hp.update_target_network_every,
        discount_factor=float(hp.discount_factor),
        epsilon_decay_duration=hp.epsilon_decay_duration,
        epsilon_start=hp.epsilon_start,
        epsilon_end=hp.epsilon_end,
        device=device)
    with self._rng.active():
      self._agents = []
      for p in range(self.sgame.num_players):
        agent = nfsp.NFSP(p, self.sgame.info_state_size, self.sgame.num_actions,
                          list(hp.hidden_layers_sizes), seed=_derive_seed(self.seed, 7, p),
                          **kwargs)
        torch.manual_seed(_derive_seed(self.seed, 8, p))
        rl = agent._rl_agent
        for m in rl._q_network.modules():
          if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        rl._target_q_network.load_state_dict(rl._q_network.state_dict())
        self._agents.append(agent)

  def train_step(self) -> dict:
    n = self.hp.episodes_per_step
    env, agents = self._env, self._agents
    with self._rng.active():
      for _ in range(n):
        time_step = env.reset()
        while not time_step.last():
          out = agents[time_step.observations["current_player"]].step(time_step)
          time_step = env.step([out.action])
        for agent in agents:
          agent.step(time_step)
    self.iterations += 1
    self.episodes += n
    out = {"iterations": 1, "episodes": n}
    for p, agent in enumerate(agents):
      sl, rl = agent.loss
      out[f"sl_loss_{p}"] = None if sl is None else float(sl)
      out[f"rl_loss_{p}"] = None if rl is None else float(rl)
    return out

  def average_table(self) -> torch.Tensor:
    table = infostate_table(self.game_string)
    probs = torch.zeros(table.legal_mask.shape, dtype=torch.float64)
    with torch.no_grad():
      for p, agent in enumerate(self._agents):
        rows = table.player == p
        net = agent._avg_network
        dev = next(net.parameters()).device
        logits = net(table.tensors[rows].to(dev)).cpu().double()
        logits = logits.masked_fill(~table.legal_mask[rows], float("-inf"))
        probs[rows] = torch.softmax(logits, dim=1)
    return evaluation.validate_table(self.game_string, probs)

  def state_dict(self) -> dict:
    # The epsilon schedule is a closure (not picklable): detached here, rebuilt on load.
    schedules = [a._rl_agent.epsilon_schedule for a in self._agents]
    try:
      for a in self._agents:
        a._rl_agent.epsilon_schedule = None
      blob = _dumps({"agents": self._agents, "env": self._env})
    finally:
      for a, sch in zip(self._agents, schedules):
        a._rl_agent.epsilon_schedule = sch
    return {**self._counters(), "rng": self._rng.state, "blob": blob}

  def load_state_dict(self, state: dict) -> None:
    from open_spiel.python.pytorch import dqn
    obj = pickle.loads(state["blob"])
    for a in obj["agents"]:
      kw = a._rl_agent._kwargs
      make = (dqn.linear_schedule if kw["epsilon_decay_schedule_str"] == "linear"
              else dqn.exponential_schedule)
      a._rl_agent.epsilon_schedule = make(kw["epsilon_start"], kw["epsilon_end"],
                                          kw["epsilon_decay_duration"])
    self._agents, self._env = obj["agents"], obj["env"]
    self._rng.state = state["rng"]
    self._load_counters(state)


BASELINES = {"cfr_plus": CFRPlus, "es_mccfr": ESMCCFR, "os_mccfr": OSMCCFR,
             "deep_cfr": DeepCFR, "nfsp": NFSP}


def make_baseline(name: str, game_string: str, seed: int, device: str = "cpu",
                  **hp) -> Baseline:
  if name not in BASELINES:
    raise ValueError(f"unknown baseline algo {name!r}; allowed: {sorted(BASELINES)}")
  return BASELINES[name](game_string, seed, device, **hp)


# ---------------------------------------------------------------------------------------
# Runner.

TIMING_FIELDS = ("train_s", "eval_s", "steps_per_s", "episodes_per_s", "time")


def run_baseline(name: str, game_string: str, seed: int, out_dir: str,
                 time_budget_s: Optional[float] = None, max_steps: Optional[int] = None,
                 eval_every_s: Optional[float] = None,
                 eval_every_steps: Optional[int] = None, device: str = "cpu",
                 hparams: Optional[dict] = None) -> list[dict]:
  """Trains until `time_budget_s` of training time (evaluation excluded) or `max_steps`,
  whichever comes first, evaluating the average policy exactly every `eval_every_s` training
  seconds / `eval_every_steps` steps and always at the end. Starts a fresh run in `out_dir`
  (an existing metrics.jsonl / DONE there is replaced). Returns the metrics records.

  Each metrics.jsonl line: algo, game, seed, step, iterations, episodes, exploitability
  (None unless two-player zero-sum), nash_conv, the last step's losses, evaluation extras
  (deep_cfr: policy_loss), and the timing fields TIMING_FIELDS. With `max_steps` every
  non-timing field is a function of (algo, game, seed, hparams, step) alone.
  """
  if time_budget_s is None and max_steps is None:
    raise ValueError("run_baseline needs time_budget_s or max_steps")
  bl = make_baseline(name, game_string, seed, device, **(hparams or {}))
  os.makedirs(out_dir, exist_ok=True)
  done_path = os.path.join(out_dir, "DONE")
  if os.path.exists(done_path):
    os.unlink(done_path)
  metrics_path = os.path.join(out_dir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    run_io.truncate_metrics(metrics_path, 0)
  run_io.write_json_atomic(os.path.join(out_dir, "config.json"), {
      "algo": name, "game": game_string, "seed": int(seed), "device": device,
      "hparams": bl.hparams, "episode_unit": bl.episode_unit,
      "time_budget_s": time_budget_s, "max_steps": max_steps,
      "eval_every_s": eval_every_s, "eval_every_steps": eval_every_steps})
  run_io.write_json_atomic(os.path.join(out_dir, "provenance.json"), run_io.provenance())

  records: list[dict] = []
  train_s = eval_s = 0.0
  step = last_eval_step = 0
  last_eval_train_s = 0.0
  losses: dict = {}
  table = None

  with run_io.MetricsLog(metrics_path) as log:

    def evaluate():
      nonlocal eval_s, table, last_eval_step, last_eval_train_s
      t0 = time.perf_counter()
      table = bl.average_table()
      expl, nc = run_io.fast_exploitability(game_string, table)
      eval_s += time.perf_counter() - t0
      rec = {"algo": name, "game": game_string, "seed": int(seed), "step": step,
             "iterations": bl.iterations, "episodes": bl.episodes,
             "exploitability": expl, "nash_conv": nc, **losses, **bl.eval_extras,
             "train_s": train_s, "eval_s": eval_s,
             "steps_per_s": step / train_s if train_s > 0 else None,
             "episodes_per_s": bl.episodes / train_s if train_s > 0 else None,
             "time": time.time()}
      log.write(rec)
      records.append(rec)
      last_eval_step, last_eval_train_s = step, train_s
      logging.info("%s %s seed=%d step=%d episodes=%d expl=%s nash_conv=%.6g "
                   "(%.3g steps/s, eval %.2fs)", name, game_string, seed, step, bl.episodes,
                   "n/a" if expl is None else f"{expl:.6g}", nc,
                   rec["steps_per_s"] or 0.0, eval_s)

    while True:
      if max_steps is not None and step >= max_steps:
        break
      if time_budget_s is not None and train_s >= time_budget_s:
        break
      t0 = time.perf_counter()
      out = bl.train_step()
      train_s += time.perf_counter() - t0
      step += 1
      losses = {k: v for k, v in out.items() if k not in ("iterations", "episodes")}
      due = ((eval_every_steps and step - last_eval_step >= eval_every_steps) or
             (eval_every_s and train_s - last_eval_train_s >= eval_every_s))
      if due:
        evaluate()
    if not records or last_eval_step != step:
      evaluate()

  export_policy(os.path.join(out_dir, "policy.json"), game_string, table)
  atomic_write_text(done_path, "")
  return records
