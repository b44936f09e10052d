"""Which lambda is deployed: policy_mixer.deploy, and the measures that choose it.

During the network's warm-up the deployed lambda is its init_lambda. Then, by deploy:
- `average`: the manager's weighted average at the keys it holds, the network's inference
  lambda (discrete: the argmax bin) elsewhere;
- `current`: the manager's current sigma;
- `best_measured` (default): with exact utilities (strategy best_response), of this update's
  CFR-BR iterates, the manager's current sigma, its average and the actor alone (lambda = 0),
  the one whose pi_mix is least exploitable on the parts deployed, measured exactly on the
  compiled tree, and measured again at an epoch later than the update (the parts move every
  epoch: `Deployment.refresh`). br_critic has no exact measure: it deploys the actor alone
  unless its two sampled best-response critics' greedy responders, measured against both
  candidates, bound the average's mix below the actor by utility_computation.br_gate_z
  standard errors (`BRGate`). The other strategies deploy the average.
A lambda averaged over past parts lags them; the current iterate tracks them but oscillates,
so the choice is measured, never assumed.
"""

from __future__ import annotations

import math
import time

import torch

from armac_spiel import evaluation
from armac_spiel.scheduler.br_critic import BRCritic, MixFn
from armac_spiel.scheduler.config import SchedulerSuiteConfig, UtilityConfig
from armac_spiel.scheduler.lambdas import LambdaSource

# br_critic's deployment candidates under deploy best_measured.
GATE_CANDIDATES = ("average", "actor")


def _pair(responder: str, candidate: str) -> str:
  """A gate value's key: the critic trained against `responder`, measured against
  `candidate`."""
  return f"{responder}>{candidate}"


class BRGate:
  """br_critic's deployment gate: one best-response critic per candidate (GATE_CANDIDATES:
  the manager's average lambda, the actor alone), each trained against its own candidate,
  and per (responder, candidate) pair an EMA (br_gate_decay) of the mean return of the
  responder's greedy play against the candidate, with its sampling variance."""

  def __init__(self, cfg: UtilityConfig, game_string: str, seed: int = 0, device="cpu"):
    self.decay, self.z = cfg.br_gate_decay, cfg.br_gate_z
    self.critics = {name: BRCritic(cfg, game_string, seed + 1009 * (k + 1), device)
                    for k, name in enumerate(GATE_CANDIDATES)}
    # "responder>candidate" -> (EMA sum of the responder's mean returns against the
    # candidate, of their weights, and of the squared weights times their variances)
    self.values = {_pair(r, c): (0.0, 0.0, 0.0)
                   for r in GATE_CANDIDATES for c in GATE_CANDIDATES}

  def add(self, responder: str, candidate: str, mean: float, var: float) -> float:
    """Enters one measure (mean return, sampling variance of the mean) of `responder`'s
    greedy play against `candidate`; returns the pair's bias-corrected EMA."""
    d = self.decay
    m, w, q = self.values[_pair(responder, candidate)]
    m, w, q = d * m + (1 - d) * mean, d * w + (1 - d), d * d * q + (1 - d) ** 2 * var
    self.values[_pair(responder, candidate)] = (m, w, q)
    return m / w

  def estimate(self, candidate: str) -> tuple[float, float]:
    """(the largest bias-corrected EMA of what a critic's greedy responder earned against
    `candidate`, at least 0; its standard error): the tightest sampled lower bound on the
    candidate's exploitability that the critics give. Exploitability is never negative, so a
    responder that loses on average bounds nothing: 0 stands."""
    est = []
    for r in GATE_CANDIDATES:
      m, w, q = self.values[_pair(r, candidate)]
      est.append((m / w, math.sqrt(q) / w))
    v, se = max(est)
    return max(v, 0.0), se

  def choice(self) -> str:
    """`average` when the average's bound (`estimate`) is below the actor's by more than
    br_gate_z standard errors of the difference, else `actor` (also until both are
    measured): the mix must earn its deployment, and it cannot while the responders find
    nothing to exploit in the actor (its bound 0)."""
    if any(w <= 0 for _, w, _ in self.values.values()):
      return "actor"
    (v_mix, se_mix), (v_act, se_act) = (self.estimate(c) for c in GATE_CANDIDATES)
    return "average" if v_mix + self.z * math.hypot(se_mix, se_act) < v_act else "actor"

  def measure(self, fns: dict[str, MixFn]) -> dict:
    """One update of each candidate's critic against its own candidate (`fns`: candidate ->
    its MixFn); then every critic's greedy responder plays br_episodes episodes against
    every candidate played exactly (BRCritic.evaluate), each pair entering its EMA. No exact
    evaluator is used: each pair is a sampled lower bound on the candidate's
    exploitability, and a responder trained against one candidate bounds the other's too,
    so a critic that lags its own (moving) candidate cannot by itself make that candidate
    look safe. Returns the measures by name (br_gate_value_*, br_gate_se_*,
    deployed_actor)."""
    notes = {}
    for name, critic in self.critics.items():
      critic.update(fns[name])
    for r, critic in self.critics.items():
      for c in GATE_CANDIDATES:
        mean, var = critic.evaluate(fns[c])
        notes[f"br_gate_value_{r}_vs_{c}"] = self.add(r, c, mean, var)
    notes.update(deployed_actor=float(self.choice() == "actor"))
    for c in GATE_CANDIDATES:
      v, se = self.estimate(c)
      notes.update({f"br_gate_value_{c}": v, f"br_gate_se_{c}": se})
    return notes

  def state_dict(self) -> tuple[dict, dict]:
    """(the critics' states by candidate, the pairs' EMA sums as lists)."""
    return ({k: c.state_dict() for k, c in self.critics.items()},
            {k: list(v) for k, v in self.values.items()})

  def matches(self, critics: dict | None, values: dict | None) -> bool:
    """Whether checkpointed critics and values have this gate's candidates and pairs."""
    return set(critics or {}) == set(self.critics) and set(values or {}) == set(self.values)

  def load_state_dict(self, critics: dict, values: dict) -> None:
    for k, c in self.critics.items():
      c.load_state_dict(critics[k])
    for k in self.values:
      self.values[k] = tuple(float(v) for v in values[k])


class Deployment:
  """The deployed lambda (see the module docstring). `choose` after each scheduler update,
  `deployed_lambda` whenever pi_mix is deployed; `notes` collects the measures it reports
  (scheduler.<name>), `refresh_s` the seconds spent measuring again between updates."""

  def __init__(self, suite: SchedulerSuiteConfig, lambdas: LambdaSource, game_string: str,
               seed: int = 0, device="cpu", notes: dict | None = None):
    self.lambdas = lambdas
    self.game_string = game_string
    self.rule = suite.policy_mixer.deploy
    kind = suite.utility_computation.kind
    self.exact = kind == "best_response"  # candidates measured exactly on the tree
    self.gate = None
    if kind == "br_critic" and self.rule == "best_measured":
      self.gate = BRGate(suite.utility_computation, game_string, seed, torch.device(device))
    self.notes = {} if notes is None else notes
    self.refresh_s: float | None = None
    self._chosen: torch.Tensor | None = None  # (S, 1) lambda chosen by best_measured
    self._chosen_at: int | None = None  # the learner epoch whose parts it was measured on
    self._iterates: list = []  # (NashConv, (S, 1) lambda) of the last update's iterates

  @property
  def chosen(self) -> torch.Tensor | None:
    """(S, 1) lambda that best_measured chose exactly (None when none stands)."""
    return self._chosen

  @property
  def chosen_at(self) -> int | None:
    """The learner epoch whose parts `chosen` was measured on."""
    return self._chosen_at

  @property
  def iterates(self) -> list:
    """[(NashConv, (S, 1) lambda)] of the last exact update's CFR-BR iterates."""
    return list(self._iterates)

  def _warm(self) -> bool:
    return self.lambdas.trainer.net.in_warmup()

  def choose(self, learner, iterates: list | None = None, parts=None) -> None:
    """After a scheduler update: `iterates` ((NashConv, lambda) of its CFR-BR iterates,
    each already measured by its best response) and `parts` (the (pi_rm, pibar) tables they
    were measured on) come from an exact update. With deploy best_measured, exact: of the
    update's iterates, the manager's current sigma, its average and the actor alone, the
    least exploitable on the parts of the epoch being finished; br_critic: the gate's
    measure (`measure_gate`). The other strategies and rules choose nothing here."""
    if iterates is not None:
      self._iterates = list(iterates)
    self._chosen = None
    if self.rule != "best_measured" or self._warm():
      return
    if self.gate is not None:
      self.measure_gate(learner)
      return
    if not self.exact:
      return
    cands = self.candidates(learner, self._iterates, parts)
    self._deploy_best(cands, learner.epoch + 1)  # the parts of the epoch being finished
    self.notes.update(
        nash_conv_deployed_at_update=min(c[1] for c in cands),
        nash_conv_average_at_update=next(c[1] for c in cands if c[0] == "average"),
        nash_conv_current_at_update=next(c[1] for c in cands if c[0] == "current"))

  def measure_gate(self, learner) -> None:
    """br_critic, deploy best_measured: one measure of the gate (BRGate.measure) against
    the learner's current candidates."""
    self.notes.update(self.gate.measure(
        {name: self.lambdas.mix_fn(learner, name) for name in GATE_CANDIDATES}))

  def candidates(self, learner, iterates: list, parts=None, remeasure: bool = False) -> list:
    """[(name, NashConv, (S, 1) lambda)]: the given CFR-BR iterates (NashConv, lambda), and
    the manager's current sigma, its average and the actor alone, measured exactly on the
    learner's current parts (`parts`: their tables when already tabulated), all in one
    batched call; `remeasure`: the iterates are measured again on these parts too."""
    n = len(self.lambdas.table)
    parts = parts if parts is not None else self.lambdas.parts(learner)
    named = [("current", self.lambdas.current_lambda(learner)),
             ("average", self.lambdas.average_lambda(learner)),
             ("actor", torch.zeros(n, 1, dtype=torch.float64))]
    lams = [lam for _, lam in named]
    if remeasure:
      lams = [lam for _, lam in iterates] + lams
    ncs = self.nash_convs(lams, parts)
    if remeasure:
      iterates = [(nc, lam) for nc, (_, lam) in zip(ncs, iterates)]
      ncs = ncs[len(iterates):]
    return ([("iterate", nc, lam) for nc, lam in iterates] +
            [(name, nc, lam) for (name, lam), nc in zip(named, ncs)])

  def nash_convs(self, lams: list, parts) -> list[float]:
    """Exact NashConv of pi_mix under each (S, 1) lambda of `lams` on `parts`, in one
    batched call (armac_spiel.evaluation.exact_values)."""
    mixes = [self.lambdas.mix(lam, parts) for lam in lams]
    return evaluation.exact_values(self.game_string, mixes).nash_conv

  def _deploy_best(self, cands: list, at_epoch: int) -> None:
    name, _, lam = min(cands, key=lambda c: c[1])
    self._chosen, self._chosen_at = lam.clone(), at_epoch
    self.notes.update(deployed_current=float(name in ("iterate", "current")),
                      deployed_actor=float(name == "actor"))

  def refresh(self, learner) -> None:
    """best_measured with exact utilities, at a learner epoch later than the choice: the
    same candidates (the update's iterates, current, average, actor) measured again on the
    parts being deployed. Evaluation, not training: nothing learned changes, only which
    candidate is deployed, so a run trains the same whatever its evaluation schedule."""
    t0 = time.perf_counter()
    parts = self.lambdas.parts(learner)
    cands = self.candidates(learner, self._iterates, parts, remeasure=True)
    self._deploy_best(cands, learner.epoch)
    self.refresh_s = (self.refresh_s or 0.0) + (time.perf_counter() - t0)

  def deployed_lambda(self, learner, net_only: bool = False) -> torch.Tensor:
    """(S, 1) float64 deployed lambda over every information state (module docstring);
    `net_only`: the network's inference lambda everywhere."""
    lambdas = self.lambdas
    lambdas.trainer.set_iteration(learner.epoch)
    if net_only or self._warm():
      return lambdas.net_lambda(lambdas.table.tensors.to(learner.device)).double().cpu()
    if self.rule == "current":
      return lambdas.current_lambda(learner)
    if self.rule == "best_measured" and self._chosen is not None:
      if self.exact and self._chosen_at != learner.epoch:
        self.refresh(learner)
      return self._chosen.clone()
    if self.gate is not None and self.gate.choice() == "actor":
      return torch.zeros(len(lambdas.table), 1, dtype=torch.float64)
    return lambdas.average_lambda(learner)

  # ---------------------------------------------------------------- checkpoints
  def state_dict(self) -> dict:
    """deployed, deployed_at, measured, br_gate (critics), gate_value (EMA sums)."""
    critics, values = self.gate.state_dict() if self.gate is not None else ({}, {})
    return {"deployed": self._chosen, "deployed_at": self._chosen_at,
            "measured": [(float(nc), lam) for nc, lam in self._iterates],
            "br_gate": critics, "gate_value": values}

  def check_state(self, d: dict) -> None:
    """Raises ValueError when a checkpoint lacks the gate this deployment needs."""
    if self.gate is not None and not self.gate.matches(d.get("br_gate"), d.get("gate_value")):
      raise ValueError("the checkpoint's scheduler state has no br_critic deployment critics, "
                       "or not their measures in this version's form (written by an "
                       "armac-spiel version without them, or with another "
                       "policy_mixer.deploy); start a new run, or resume with "
                       "policy_mixer.deploy: average")

  def load_state_dict(self, d: dict) -> None:
    self.check_state(d)
    self._chosen = d.get("deployed")
    self._chosen_at = d.get("deployed_at")  # None (older checkpoints): measured again
    self._iterates = [(float(nc), lam) for nc, lam in d.get("measured", [])]
    if self.gate is not None:
      self.gate.load_state_dict(d["br_gate"], d["gate_value"])
