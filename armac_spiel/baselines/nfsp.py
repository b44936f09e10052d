"""Neural Fictitious Self-Play (Heinrich & Silver, arXiv 1603.01121), OpenSpiel's PyTorch
`NFSP` agents (one per player) on `rl_environment`, as a Learner.

Each agent plays its epsilon-greedy DQN best response with probability eta (anticipatory
parameter), else its average-policy network, which is trained by supervised learning on its
own best-response actions.
"""

# OpenSpiel exposes no public per-episode API for NFSP's internals.
# pylint: disable=protected-access

from __future__ import annotations

import dataclasses

import torch
from open_spiel.python import rl_environment
from open_spiel.python.pytorch import dqn
from open_spiel.python.pytorch import nfsp as os_nfsp

from armac_spiel import evaluation
from armac_spiel.baselines.base import Baseline, BaselineParams, derive_seed
from armac_spiel.baselines.state import (GlobalRng, buffer_from, buffer_state, np_legacy_from,
                                         np_legacy_state, rng_from_plain, rng_plain)
from games import infostate_table


@dataclasses.dataclass(frozen=True)
class NFSPParams(BaselineParams):
  """OpenSpiel's examples/nfsp_leduc_pytorch.py settings."""
  episodes_per_step: int = 100
  hidden_layers_sizes: tuple[int, ...] = (128,)
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
    hp = self.hp
    self._rng = GlobalRng(derive_seed(self.seed, 5), cuda=str(device).startswith("cuda"))
    self._env = rl_environment.Environment(
        self.sgame.game,
        chance_event_sampler=rl_environment.ChanceEventSampler(derive_seed(self.seed, 6)))
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
        agent = os_nfsp.NFSP(p, self.sgame.info_state_size, self.sgame.num_actions,
                          list(hp.hidden_layers_sizes), seed=derive_seed(self.seed, 7, p),
                          **kwargs)
        torch.manual_seed(derive_seed(self.seed, 8, p))
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
          "reservoir": buffer_state(a._reservoir_buffer),
          "rl": {"iteration": int(rl._iteration), "last_loss": rl._last_loss_value,
                 "q_network": rl._q_network.state_dict(),
                 "target_q_network": rl._target_q_network.state_dict(),
                 "optimizer": rl._optimizer.state_dict(),
                 "replay": buffer_state(rl._replay_buffer)}})
    chance = np_legacy_state(self._env._chance_event_sampler._rng.get_state(legacy=True))
    return {**self._counters(), "rng": rng_plain(self._rng.state), "agents": agents,
            "chance_rng": chance}

  def load_state_dict(self, state: dict) -> None:
    if len(state["agents"]) != len(self._agents):
      raise ValueError(f"nfsp checkpoint has {len(state['agents'])} agents, the game has "
                       f"{len(self._agents)} players")
    for a, d in zip(self._agents, state["agents"]):
      rl, r = a._rl_agent, d["rl"]
      a._iteration, a._mode = int(d["iteration"]), os_nfsp.MODE(int(d["mode"]))
      a._last_sl_loss_value = d["last_sl_loss"]
      a._avg_network.load_state_dict(d["avg_network"])
      a._optimizer.load_state_dict(d["optimizer"])
      a._reservoir_buffer = buffer_from(os_nfsp.ReservoirBuffer, os_nfsp.Transition, d["reservoir"])
      rl._iteration, rl._last_loss_value = int(r["iteration"]), r["last_loss"]
      rl._q_network.load_state_dict(r["q_network"])
      rl._target_q_network.load_state_dict(r["target_q_network"])
      rl._optimizer.load_state_dict(r["optimizer"])
      rl._replay_buffer = buffer_from(dqn.ReplayBuffer, dqn.Transition, r["replay"])
      a._prev_timestep = a._prev_action = rl._prev_timestep = rl._prev_action = None
    self._env._chance_event_sampler._rng.set_state(np_legacy_from(state["chance_rng"]))
    self._rng.state = rng_from_plain(state["rng"])
    self._load_counters(state)
