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

Checkpoints (`state_dict`) are plain data (armac_spiel.safe_load): ES-MCCFR's C++ solver as
its own serialisation string; Deep CFR and NFSP as network and optimizer state_dicts,
memories as tensors of their filled rows, counters, and generator states as lists and
tensors; `load_state_dict` rebuilds the objects, and training continues exactly.
"""

# OpenSpiel exposes no public per-iteration API for Deep CFR / NFSP internals.
# pylint: disable=protected-access

from __future__ import annotations

import contextlib
import dataclasses
import random
from typing import Optional

import numpy as np
import pyspiel
import torch
from open_spiel.python import policy as os_policy

from armac_spiel import evaluation
from armac_spiel.config import ConfigError, dataclass_from_dict
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


def _np_legacy_state(state) -> dict:
  """np.random.RandomState.get_state() (MT19937) as plain data."""
  _, key, pos, has_gauss, gauss = state
  return {"key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
          "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}


def _np_legacy_from(d: dict) -> tuple:
  return ("MT19937", d["key"].numpy().astype(np.uint32), int(d["pos"]), int(d["has_gauss"]),
          float(d["cached_gaussian"]))


def _rng_plain(state) -> dict:
  """A _GlobalRng state (Python, NumPy, torch, CUDA generator states) as plain data."""
  version, internal, gauss = state[0]
  return {"python": [int(version), list(internal), gauss],
          "numpy": _np_legacy_state(state[1]), "torch": state[2].clone(),
          "cuda": None if state[3] is None else [t.clone() for t in state[3]]}


def _rng_from_plain(d: dict) -> tuple:
  version, internal, gauss = d["python"]
  return ((int(version), tuple(int(x) for x in internal), gauss), _np_legacy_from(d["numpy"]),
          d["torch"].clone(), None if d["cuda"] is None else list(d["cuda"]))


def _buffer_state(buf) -> dict | None:
  """An OpenSpiel replay / reservoir buffer as plain data: its filled rows, one tensor per
  field, its capacity and its counter (add_calls or entry_index)."""
  if buf is None:
    return None
  n = len(buf)
  count = buf.add_calls if hasattr(buf, "add_calls") else buf.entry_index
  return {"rows": {f: torch.from_numpy(np.array(v[:n]))
                   for f, v in zip(buf.experience._fields, buf.experience)},
          "capacity": int(buf.capacity), "count": int(count)}


def _buffer_from(cls, experience_cls, state: dict | None):
  """Rebuilds `cls` (an OpenSpiel buffer with `init`) from `_buffer_state` output."""
  if state is None:
    return None
  rows = [state["rows"][f].numpy() for f in experience_cls._fields]
  buf = cls.init(state["capacity"], experience_cls(*[r[0] for r in rows]))
  for dst, src in zip(buf.experience, rows):
    dst[:len(src)] = src
  count = np.array(state["count"])
  if hasattr(buf, "add_calls"):
    buf.add_calls = count
  else:
    buf.entry_index = count
  return buf


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


def _check_params(params) -> None:
  """Integer hyper-parameters must be >= 1 (ConfigError naming the field)."""
  for f in dataclasses.fields(params):
    v = getattr(params, f.name)
    if isinstance(f.default, bool) or not isinstance(f.default, int):
      continue
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ConfigError(f"hyper-parameter {f.name!r} = {v!r}: must be an integer >= 1")


# ---------------------------------------------------------------------------------------
# Baselines.


class Baseline:
  """An OpenSpiel algorithm as a `Learner` (armac_spiel.learner): `step()`,
  `average_table()`, `state_dict()` / `load_state_dict()`, counters `steps`, `iterations`
  and `episodes` (unit: `episode_unit`)."""

  name = ""
  episode_unit = ""
  params_cls = CFRPlusParams

  def __init__(self, game_string: str, seed: int, device: str = "cpu", **hparams):
    self.game_string = game_string
    self.sgame = load_game(game_string)
    self.seed = int(seed)
    self.device = device
    self.hp = dataclass_from_dict(self.params_cls, hparams, f"{self.name} hyper-parameters")
    _check_params(self.hp)
    self.steps = 0
    self.episodes = 0
    self.iterations = 0
    self.eval_extras: dict = {}   # filled by average_table (e.g. the strategy-net loss)

  @property
  def hparams(self) -> dict:
    return dataclasses.asdict(self.hp)

  def step(self) -> dict:
    """One step of training (counted in `steps`); returns its losses."""
    out = self._step()
    self.steps += 1
    return out

  def _step(self) -> dict:
    raise NotImplementedError

  def counters(self) -> dict:
    return {"algo": self.name, "game": self.game_string, "seed": self.seed,
            "step": self.steps, "iterations": self.iterations, "episodes": self.episodes}

  def evaluation_extras(self) -> dict:
    return dict(self.eval_extras)

  def average_policy(self):
    """The average policy as an OpenSpiel `policy.TabularPolicy`."""
    return evaluation.to_openspiel_tabular(self.game_string, self.average_table())

  def average_table(self) -> torch.Tensor:
    raise NotImplementedError

  def state_dict(self) -> dict:
    raise NotImplementedError(f"{self.name} has no checkpoint support")

  def load_state_dict(self, state: dict) -> None:
    raise NotImplementedError(f"{self.name} has no checkpoint support")

  def _counters(self) -> dict:
    return {"steps": self.steps, "episodes": self.episodes, "iterations": self.iterations}

  def _load_counters(self, state: dict) -> None:
    self.steps = int(state["steps"])
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

  def _step(self) -> dict:
    self._solver.evaluate_and_update_policy()
    self.iterations += 1
    self.episodes += 1
    return {}

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


class _MCCFR(Baseline):
  """A pyspiel MCCFR solver (its own C++ generator, seeded from `seed`), `iterations_per_step`
  iterations per step; checkpointed as the solver's own serialisation string."""

  solver_cls = None  # a pyspiel MCCFR solver class

  def _step(self) -> dict:
    n = self.hp.iterations_per_step
    for _ in range(n):
      self._solver.run_iteration()
    self.iterations += n
    self.episodes += n * self.sgame.num_players
    return {}

  def average_table(self) -> torch.Tensor:
    return evaluation.tabularise(self.game_string, self._solver.average_policy())

  def solver_policy(self) -> "SolverPolicy":
    """The solver's average policy, queried per state (uniform where the solver has not
    been): it needs no enumeration of the game."""
    return SolverPolicy(self)

  def state_dict(self) -> dict:
    # The solver's own text serialisation (game, generator state and every information
    # state's regrets and averages) round-trips exactly; a string keeps the checkpoint
    # plain data.
    return {**self._counters(), "solver": self._solver.__getstate__()}

  def load_state_dict(self, state: dict) -> None:
    if not isinstance(state["solver"], str):
      raise ValueError(f"{self.name} checkpoint: 'solver' must be the solver's serialisation "
                       f"string, got {type(state['solver']).__name__} (a checkpoint from an "
                       "older armac-spiel version: train again)")
    solver = self.solver_cls.__new__(self.solver_cls)
    solver.__setstate__(state["solver"])  # parses the text
    self._solver = solver
    self._load_counters(state)


class SolverPolicy(os_policy.Policy):
  """A pyspiel solver's average policy as an OpenSpiel policy. The pyspiel policy points
  into the solver, so this keeps the learner that owns the solver alive."""

  def __init__(self, learner: _MCCFR):
    super().__init__(learner.sgame.game, list(range(learner.sgame.num_players)))
    self._learner = learner
    self._policy = learner._solver.average_policy()  # pylint: disable=protected-access

  def action_probabilities(self, state, player_id=None):
    del player_id
    return self._policy.action_probabilities(state)


class ESMCCFR(_MCCFR):
  """pyspiel.ExternalSamplingMCCFRSolver."""

  name = "es_mccfr"
  episode_unit = "sampled traversals (num_players per iteration)"
  params_cls = ESMCCFRParams
  solver_cls = pyspiel.ExternalSamplingMCCFRSolver

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    kinds = {"simple": pyspiel.MCCFRAverageType.SIMPLE, "full": pyspiel.MCCFRAverageType.FULL}
    if self.hp.average_type not in kinds:
      raise ConfigError(f"es_mccfr hyper-parameter 'average_type' = "
                        f"{self.hp.average_type!r}: must be one of {sorted(kinds)}")
    self._solver = pyspiel.ExternalSamplingMCCFRSolver(
        self.sgame.game, _derive_seed(self.seed, 1), kinds[self.hp.average_type])


class OSMCCFR(_MCCFR):
  """pyspiel.OutcomeSamplingMCCFRSolver (Lanctot et al. 2009): one sampled episode per
  player per iteration, epsilon-exploring the traverser's actions."""

  name = "os_mccfr"
  episode_unit = "sampled episodes (num_players per iteration)"
  params_cls = OSMCCFRParams
  solver_cls = pyspiel.OutcomeSamplingMCCFRSolver

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    if not 0.0 < self.hp.epsilon <= 1.0:
      raise ConfigError(f"os_mccfr hyper-parameter 'epsilon' = {self.hp.epsilon!r}: must be "
                        "in (0, 1]")
    self._solver = pyspiel.OutcomeSamplingMCCFRSolver(
        self.sgame.game, self.hp.epsilon, _derive_seed(self.seed, 1))


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

  def _step(self) -> dict:
    s, hp = self._solver, self.hp
    out = {}
    with self._rng.active():
      for p in range(self.sgame.num_players):
        for _ in range(hp.num_traversals):
          s._traverse_game_tree(s._root_node, p)
        if hp.reinitialize_advantage_networks:
          s._reinitialize_advantage_network(p)
        out[f"advantage_loss_{p}"] = s._learn_advantage_network(p)
      s._iteration += 1
    self.iterations += 1
    self.episodes += hp.num_traversals * self.sgame.num_players
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
    s = self._solver
    return {**self._counters(), "rng": _rng_plain(self._rng.state), "solver": {
        "iteration": int(s._iteration),
        "advantage_networks": [n.state_dict() for n in s._advantage_networks],
        "advantage_optimizers": [o.state_dict() for o in s._optimizer_advantages],
        "policy_network": s._policy_network.state_dict(),
        "policy_optimizer": s._optimizer_policy.state_dict(),
        "advantage_memories": [_buffer_state(m) for m in s._advantage_memories],
        "strategy_memory": _buffer_state(s._strategy_memories)}}

  def load_state_dict(self, state: dict) -> None:
    from open_spiel.python.pytorch import deep_cfr
    s, d = self._solver, state["solver"]
    s._iteration = int(d["iteration"])
    for net, opt, net_sd, opt_sd in zip(s._advantage_networks, s._optimizer_advantages,
                                        d["advantage_networks"], d["advantage_optimizers"]):
      net.load_state_dict(net_sd)
      opt.load_state_dict(opt_sd)
    s._policy_network.load_state_dict(d["policy_network"])
    s._optimizer_policy.load_state_dict(d["policy_optimizer"])
    s._advantage_memories = [_buffer_from(deep_cfr.ReservoirBuffer, deep_cfr.AdvantageMemory, m)
                             for m in d["advantage_memories"]]
    s._strategy_memories = _buffer_from(deep_cfr.ReservoirBuffer, deep_cfr.StrategyMemory,
                                        d["strategy_memory"])
    self._rng.state = _rng_from_plain(state["rng"])
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

  def _step(self) -> dict:
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
    out = {}
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
    agents = []
    for a in self._agents:
      rl = a._rl_agent
      if any(x is not None for x in (a._prev_timestep, a._prev_action, rl._prev_timestep,
                                     rl._prev_action)):
        raise RuntimeError("nfsp: state_dict is only available between episodes")
      agents.append({
          "iteration": int(a._iteration), "mode": int(a._mode.value),
          "last_sl_loss": a._last_sl_loss_value,
          "avg_network": a._avg_network.state_dict(), "optimizer": a._optimizer.state_dict(),
          "reservoir": _buffer_state(a._reservoir_buffer),
          "rl": {"iteration": int(rl._iteration), "last_loss": rl._last_loss_value,
                 "q_network": rl._q_network.state_dict(),
                 "target_q_network": rl._target_q_network.state_dict(),
                 "optimizer": rl._optimizer.state_dict(),
                 "replay": _buffer_state(rl._replay_buffer)}})
    chance = _np_legacy_state(self._env._chance_event_sampler._rng.get_state(legacy=True))
    return {**self._counters(), "rng": _rng_plain(self._rng.state), "agents": agents,
            "chance_rng": chance}

  def load_state_dict(self, state: dict) -> None:
    from open_spiel.python.pytorch import dqn, nfsp
    if len(state["agents"]) != len(self._agents):
      raise ValueError(f"nfsp checkpoint has {len(state['agents'])} agents, the game has "
                       f"{len(self._agents)} players")
    for a, d in zip(self._agents, state["agents"]):
      rl, r = a._rl_agent, d["rl"]
      a._iteration, a._mode = int(d["iteration"]), nfsp.MODE(int(d["mode"]))
      a._last_sl_loss_value = d["last_sl_loss"]
      a._avg_network.load_state_dict(d["avg_network"])
      a._optimizer.load_state_dict(d["optimizer"])
      a._reservoir_buffer = _buffer_from(nfsp.ReservoirBuffer, nfsp.Transition, d["reservoir"])
      rl._iteration, rl._last_loss_value = int(r["iteration"]), r["last_loss"]
      rl._q_network.load_state_dict(r["q_network"])
      rl._target_q_network.load_state_dict(r["target_q_network"])
      rl._optimizer.load_state_dict(r["optimizer"])
      rl._replay_buffer = _buffer_from(dqn.ReplayBuffer, dqn.Transition, r["replay"])
      a._prev_timestep = a._prev_action = rl._prev_timestep = rl._prev_action = None
    self._env._chance_event_sampler._rng.set_state(_np_legacy_from(state["chance_rng"]))
    self._rng.state = _rng_from_plain(state["rng"])
    self._load_counters(state)


BASELINES = {"cfr_plus": CFRPlus, "es_mccfr": ESMCCFR, "os_mccfr": OSMCCFR,
             "deep_cfr": DeepCFR, "nfsp": NFSP}


def make_baseline(name: str, game_string: str, seed: int, device: str = "cpu",
                  **hp) -> Baseline:
  if name not in BASELINES:
    raise ConfigError(f"unknown baseline algo {name!r}; allowed: {sorted(BASELINES)}")
  return BASELINES[name](game_string, seed, device, **hp)
