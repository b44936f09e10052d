"""ARMAC's hyper-parameters: `ARMACConfig`, a `Params` (armac_spiel.params), loadable from YAML.

Per-game tuned defaults live in experiments/configs/<game>.yaml. A game without one gets
the fields `derive_config` derives from the game itself (its rules: docs/config.md).
Precedence: dataclass defaults < derived fields (no YAML only) < YAML file < `--set` <
command-line flags (resolved by armac_spiel.runs.resolve_spec). The resolved config is
written to each run directory as config.json, the derived fields with their reasons.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple, Optional

import torch
import yaml

from armac_spiel.params import ConfigError, Params  # ConfigError: re-exported for callers
from games import SAMPLER_BACKENDS, load_game
from games.tree import DECISION, compile_tree, tree_fits

WEIGHTINGS = ("uniform", "linear")
LR_DECAYS = ("none", "sqrt", "linear")
SCHEDULER_MODES = ("off", "continuous", "discrete")
POLICY_DRAWS = ("uniform", "balanced", "current")
REGRET_FITS = ("rows", "states", "bootstrap")  # bootstrap: regret_fit only
ACTOR_FITS = ("rows", "states")
CRITIC_TRACES = ("tree_backup", "retrace")
REGRET_DISCOUNTS = ("none", "dcfr")


@dataclasses.dataclass(frozen=True)
class ARMACConfig(Params):
  """Hyper-parameters of one ARMAC run. The main fields: see README 'Configuration'."""
  # Networks.
  critic_hidden: tuple[int, ...] = (128, 128)
  regret_hidden: tuple[int, ...] = (128, 128)
  actor_hidden: tuple[int, ...] = (128, 128)
  critic_lr: float = 1e-3
  regret_lr: float = 1e-3
  actor_lr: float = 1e-3
  lr_decay: str = "sqrt"             # none | sqrt | linear, for W and the actor
  lr_decay_epochs: float = 20.0
  min_lr: float = 1e-5
  # Sampling.
  episodes_per_epoch: int = 1024
  groups_per_epoch: int = 16         # distinct past policies j per epoch (episodes split evenly)
  current_groups: int = 4            # groups that play the current policy (mean-policy data)
  explore_eps: float = 0.1           # epsilon-uniform exploration of the learning player
  alternating_updates: bool = True   # policy j's regrets are for player j mod N only (as CFR's
                                     # alternating updates); False: both players every epoch
  sampler: str = "auto"
  # Policy buffer (past regret nets and critics).
  max_snapshots: int = 256
  snapshot_weighting: str = "linear"  # CFR weight of policy j in W's mean: uniform | linear
  policy_draw: str = "balanced"       # uniform (ARMAC.md) | balanced (see past_policies.PolicyDraw)
  # Critic: Tree Backup (or Retrace) towards the current policy.
  tb_lambda: float = 1.0
  critic_trace: str = "tree_backup"  # trace c = lambda * pi(a) | retrace: lambda * min(1, pi/mu)
  critic_target_tau: float = 1.0     # Polyak rate of the critic's target network, whose
                                     # values bootstrap the trace targets: after each critic
                                     # step theta' <- (1 - tau) theta' + tau theta; 1: no
                                     # target network (the live critic's values)
  critic_prev_actions: int = 0       # K > 0: the one-hots of the last K decision actions join
                                     # the critic's history input (records.critic_history):
                                     # all players' information-state tensors do not tell
                                     # apart the nodes of a turn-based simultaneous-move game
                                     # (the first mover's action is in no player's view);
                                     # K = players - 1 does; 0: off
  critic_replay_episodes: int = 16384
  critic_steps: int = 8
  critic_batch_episodes: int = 512
  # Regret network W.
  regret_replay: int = 1_000_000     # reservoir rows (regret_fit=rows; states keeps sums)
  regret_steps: int = 8
  regret_batch: int = 2048
  regret_scale_sqrt_t: bool = True   # regress on sqrt(t+1) * targets (see fits.RowsFit.loss)
  regret_fit: str = "rows"           # rows: SGD on replay rows | states: full-batch on the
                                     # replay's per-information-state means (see ARMAC) |
                                     # bootstrap: W carries the cumulative regret sums
                                     # (armac_spiel/bootstrap.py)
  regret_lstsq: int = 0              # states: 0 off; N > 0: N Adam steps (instead of
                                     # regret_steps), then W's last layer is solved exactly
                                     # (ridge least squares on the hidden features of the
                                     # seen states; fits.StatesFit.train)
  bootstrap_memory: int = 200_000    # distinct encodings W is re-fitted on (bootstrap)
  regret_discount: str = "none"      # none: CFR weights (snapshot_weighting) | dcfr: DCFR's
                                     # discounted sums (needs regret_fit=states, policy_draw=
                                     # current; see fits.StatesFit.fold)
  regret_plus: bool = False          # clip the cumulative regrets at 0 each epoch (RM+, as
                                     # CFR+ / DCFR+; regret_fit=bootstrap only)
  dcfr_alpha: float = 1.5            # DCFR: positive sums *= n^alpha / (n^alpha + 1)
  dcfr_beta: float = 0.0             # DCFR: negative sums *= n^beta / (n^beta + 1)
  # Mean-policy network (actor).
  actor_replay: int = 200_000        # reservoir rows (actor_fit=rows; states keeps sums)
  actor_steps: int = 8
  actor_batch: int = 2048
  average_weighting: str = "linear"   # weight of epoch t's policy in the average
  actor_fit: str = "rows"             # rows: SGD on replay rows | states: full-batch on the
                                      # replay's per-information-state mean policies
  # Scheduler between actor and regret policies.
  scheduler_mode: str = "off"
  # Run control.
  eval_every: int = 50                # epochs between exact evaluations
  max_epochs: int = 0                 # 0 = until the time budget

  def validate(self) -> None:
    need = self.need
    for name in ("critic_hidden", "regret_hidden", "actor_hidden"):
      v = getattr(self, name)
      need(len(v) > 0 and all(h > 0 for h in v), name, "a non-empty list of positive integers")
    for name in ("critic_lr", "regret_lr", "actor_lr", "lr_decay_epochs", "min_lr"):
      v = getattr(self, name)
      need(math.isfinite(v) and v >= 0, name, "a finite float >= 0")
    for name in ("episodes_per_epoch", "groups_per_epoch", "max_snapshots",
                 "critic_replay_episodes", "critic_batch_episodes", "regret_replay",
                 "regret_batch", "bootstrap_memory", "actor_replay", "actor_batch",
                 "eval_every"):
      need(getattr(self, name) > 0, name, "a positive integer")
    for name in ("critic_steps", "regret_steps", "actor_steps", "max_epochs", "current_groups",
                 "critic_prev_actions"):
      need(getattr(self, name) >= 0, name, "an integer >= 0")
    need(self.episodes_per_epoch % self.groups_per_epoch == 0, "episodes_per_epoch",
         f"a multiple of groups_per_epoch ({self.groups_per_epoch})")
    need(1 <= self.current_groups < self.groups_per_epoch, "current_groups",
         f">= 1 and below groups_per_epoch ({self.groups_per_epoch}): the other groups feed W")
    need(0.0 <= self.explore_eps <= 1.0, "explore_eps", "in [0, 1]")
    need(0.0 <= self.tb_lambda <= 1.0, "tb_lambda", "in [0, 1]")
    need(self.critic_trace in CRITIC_TRACES, "critic_trace", f"one of {CRITIC_TRACES}")
    need(0.0 < self.critic_target_tau <= 1.0, "critic_target_tau", "in (0, 1]")
    need(self.lr_decay in LR_DECAYS, "lr_decay", f"one of {LR_DECAYS}")
    need(self.lr_decay_epochs > 0, "lr_decay_epochs", "> 0")
    need(self.policy_draw in POLICY_DRAWS, "policy_draw", f"one of {POLICY_DRAWS}")
    need(self.sampler in SAMPLER_BACKENDS, "sampler", f"one of {SAMPLER_BACKENDS}")
    need(self.regret_fit in REGRET_FITS, "regret_fit", f"one of {REGRET_FITS}")
    need(self.actor_fit in ACTOR_FITS, "actor_fit", f"one of {ACTOR_FITS}")
    for name in ("regret_fit", "actor_fit"):
      need(getattr(self, name) != "states" or self.sampler != "pyspiel", name,
           "'rows' or 'bootstrap' with sampler 'pyspiel': 'states' needs information-state "
           "ids (tree sampler)")
    need(self.regret_fit != "bootstrap" or self.policy_draw == "current", "regret_fit",
         "'rows' or 'states' unless policy_draw is 'current' ('bootstrap' adds each epoch's "
         "regrets to W once, so they must all come from the current policy)")
    need(not self.regret_plus or self.regret_fit == "bootstrap", "regret_plus",
         "false unless regret_fit is 'bootstrap' (the other fits keep no running sums to "
         "clip)")
    need(self.regret_lstsq >= 0, "regret_lstsq", "an int >= 0")
    need(self.regret_lstsq == 0 or self.regret_fit == "states", "regret_lstsq",
         "0 unless regret_fit is 'states' (the exact last layer needs the full batch of "
         "per-state targets)")
    need(self.regret_discount in REGRET_DISCOUNTS, "regret_discount",
         f"one of {REGRET_DISCOUNTS}")
    need(self.regret_discount == "none" or (self.regret_fit in ("states", "bootstrap") and
                                            self.policy_draw == "current"),
         "regret_discount", "'none' unless regret_fit is 'states' or 'bootstrap' and "
         "policy_draw is 'current' (discounting needs each epoch's regret sums to be final)")
    for name in ("dcfr_alpha", "dcfr_beta"):
      need(math.isfinite(getattr(self, name)), name, "a finite float")
    need(self.snapshot_weighting in WEIGHTINGS, "snapshot_weighting", f"one of {WEIGHTINGS}")
    need(self.average_weighting in WEIGHTINGS, "average_weighting", f"one of {WEIGHTINGS}")
    need(self.scheduler_mode in SCHEDULER_MODES, "scheduler_mode",
         f"one of {SCHEDULER_MODES}")


def from_dict(d: dict, base: Optional[ARMACConfig] = None,
              where: Optional[str] = None) -> ARMACConfig:
  """`d` over `base` (default: the defaults); see Params.from_dict."""
  return ARMACConfig.from_dict(d, base, where)


def parse_sets(values: list[str], flag: str = "--set") -> dict:
  """`--set` flag values -> {field: value}. Each value holds KEY=VALUE pairs separated by
  commas (commas inside [...] belong to a list: `critic_hidden=[64,64]`); values parse as
  YAML scalars or lists; unknown keys are left for from_dict to name."""
  out = {}
  items = [p for v in values for p in re.split(r",(?![^\[]*\])", v) if p]
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ConfigError(f"{flag}: {item!r} is not KEY=VALUE (e.g. {flag}=critic_lr=0.001)")
    try:
      out[key.strip()] = yaml.safe_load(value)
    except yaml.YAMLError as e:
      raise ConfigError(f"{flag}: cannot parse the value of {key.strip()!r}: {e}") from e
  return out


def load_yaml(path: str, source: Optional[str] = None) -> dict:
  """The mapping of YAML file `path`. Errors name `source`, where the path came from
  (default `--config=PATH`)."""
  source = source or f"--config={path}"
  try:
    with open(path) as f:
      d = yaml.safe_load(f) or {}
  except (OSError, yaml.YAMLError) as e:
    raise ConfigError(f"{source}: cannot read YAML: {e}") from e
  if not isinstance(d, dict):
    raise ConfigError(f"{source}: top level must be a mapping")
  return d


# ---------------------------------------------------------------- defaults from the game
class Derived(NamedTuple):
  """One derived config field: its value and why (written to config.json)."""
  value: Any
  why: str


@dataclasses.dataclass(frozen=True)
class GameFacts:
  """What derive_config reads of a game."""
  num_players: int
  num_actions: int        # distinct actions
  max_depth: int          # game.max_game_length()
  return_range: float     # max_utility - min_utility
  on_tree: bool           # the compiled tree holds the game (games.tree.tree_fits)
  num_nodes: int          # compiled tree's nodes (0 beyond the tree)
  num_infostates: int     # information states (0 beyond the tree: unknown)
  aliased_nodes: int      # decision nodes whose critic history input another decision node
                          # shares (on the tree: counted; beyond: -1 where the game's type
                          # says so, a turn-based simultaneous-move game; else 0)


def aliased_decision_nodes(tree) -> int:
  """Decision nodes of a compiled tree whose history encoding (every player's
  information-state tensor) equals another decision node's: the critic cannot tell them
  apart. Counted on view-row ids made content ids, without building the encodings."""
  dec = (tree.kind == DECISION).nonzero().squeeze(1)
  content = torch.unique(tree.view_tensors, dim=0, return_inverse=True)[1]
  content = torch.cat([content, torch.tensor([-1])])  # -1: a player without a view
  keys = content[tree.view[dec]]  # (M_dec, N)
  _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
  return int((counts[inverse] > 1).sum())


def game_facts(game_string: str) -> GameFacts:
  """The facts of `game_string` that derive_config reads (compiles the tree where it fits:
  the run compiles it anyway, and the disk cache keeps it)."""
  sg = load_game(game_string)
  game = sg.game
  on_tree = tree_fits(game_string)
  nodes = states = 0
  if on_tree:
    tree = compile_tree(game_string)
    nodes, states = tree.num_nodes, tree.num_infostates
    aliased = aliased_decision_nodes(tree)
  else:
    aliased = -1 if game_string.startswith("turn_based_simultaneous_game") else 0
  return GameFacts(num_players=sg.num_players, num_actions=sg.num_actions,
                   max_depth=game.max_game_length(),
                   return_range=float(game.max_utility() - game.min_utility()),
                   on_tree=on_tree, num_nodes=nodes, num_infostates=states,
                   aliased_nodes=aliased)


def _pow2_clamp(x: float, lo: int, hi: int) -> int:
  """The power of two at or above x, clamped to [lo, hi]."""
  return int(min(max(2 ** math.ceil(math.log2(max(x, 1))), lo), hi))


def derive_config(game_string: str, facts: Optional[GameFacts] = None,
                  sampler: str = "auto") -> dict[str, Derived]:
  """ARMAC config fields derived from the game (no YAML applies), each with its reason.

  On the compiled tree: the per-state fits of the tuned Leduc config (W and the actor fit
  per-information-state sums, DCFR, the current policy replayed, one snapshot, uniform
  exploration), episodes sized by the information states. Beyond the tree: the bootstrap
  path on the pyspiel sampler (runs.spec.BOOTSTRAP). Both: the previous action joins the
  critic's input where nodes alias; the critic's learning rate follows the returns' range.
  `sampler` (the one asked for, if any): 'pyspiel' takes the path beyond the tree.
  The rules and their grounds: docs/config.md."""
  f = facts or game_facts(game_string)
  d: dict[str, Derived] = {}
  if f.on_tree and sampler != "pyspiel":
    tree = f"the compiled tree holds the game ({f.num_nodes:,} nodes)"
    d["sampler"] = Derived("tree", tree)
    for name, value in (("regret_fit", "states"), ("actor_fit", "states"),
                        ("regret_discount", "dcfr"), ("policy_draw", "current"),
                        ("max_snapshots", 1), ("explore_eps", 1.0)):
      d[name] = Derived(value, f"{tree}: per-information-state fits with DCFR, as the "
                               "tuned Leduc config")
    s = f.num_infostates
    episodes = _pow2_clamp(16 * s, 4096, 16384)
    d["episodes_per_epoch"] = Derived(
        episodes, f"about 16 episodes per information state ({s:,}), a power of two in "
                  "[4096, 16384]: below 4096 the fits dominate an epoch, above 16384 a "
                  "budget buys too few epochs")
    steps = _pow2_clamp(math.sqrt(f.num_nodes) / 8, 16, 64)
    d["critic_steps"] = Derived(
        steps, f"sqrt of the nodes ({f.num_nodes:,}) / 8 as a power of two in [16, 64]: the "
               "critic must track pi^t on every history, and with too few steps the early "
               "regret-matching policies are worse than uniform (docs/config.md)")
    d["critic_batch_episodes"] = Derived(
        max(256, episodes // steps), "the epoch's episodes over the critic's steps (at least "
                                     "256 a step): it sees each new episode about once")
    d["regret_lstsq"] = Derived(8, "8 Adam steps, then W's last layer solved exactly (as the "
                                   "tuned Kuhn config): 96 Adam steps were most of an "
                                   "epoch's cost")
    batch = _pow2_clamp(s, 512, 4096)
    for name in ("regret_batch", "actor_batch"):
      d[name] = Derived(batch, f"the information states ({s:,}) as a power of two in "
                               "[512, 4096]")
    d["actor_steps"] = Derived(
        _pow2_clamp(16 * s / batch, 16, 64),
        f"about 16 passes of {batch} over the information states, a power of two in [16, 64]: "
        "with fewer the actor lags the average it fits (docs/config.md)")
  else:
    beyond = ("the pyspiel sampler was asked for" if f.on_tree else
              "the compiled tree does not hold the game") + \
        ": the bootstrap path (W carries DCFR+'s sums) on the pyspiel sampler"
    d["sampler"] = Derived("pyspiel", beyond)
    for name, value in (("regret_fit", "bootstrap"), ("actor_fit", "rows"),
                        ("policy_draw", "current"), ("max_snapshots", 1),
                        ("regret_discount", "dcfr"), ("regret_plus", True),
                        ("explore_eps", 1.0)):
      d[name] = Derived(value, beyond)
    d["episodes_per_epoch"] = Derived(4096, "the bootstrap path's tuned value (Leduc)")
    d["critic_steps"] = Derived(32, "the bootstrap path's tuned value (Leduc)")
    memory = _pow2_clamp(4096 * f.max_depth, 65536, 1 << 20)
    d["bootstrap_memory"] = Derived(
        memory, f"an epoch's decisions at most (4096 episodes x depth {f.max_depth}) as a "
                "power of two in [65536, 2^20]")
  if f.aliased_nodes:
    seen = (f"{f.aliased_nodes:,} decision nodes share their history input with another"
            if f.aliased_nodes > 0 else "a turn-based simultaneous-move game")
    d["critic_prev_actions"] = Derived(
        f.num_players - 1, f"{seen}: the previous {f.num_players - 1} action(s) tell them "
                           "apart")
  d["critic_lr"] = Derived(
      3e-3 if f.return_range <= 4 else 1e-3,
      f"returns span {f.return_range:g}: " + ("3e-3 up to 4 (as the tuned Kuhn config: "
                                             "the critic must track pi^t)"
                                             if f.return_range <= 4 else
                                             "1e-3 above 4 (as the tuned Leduc config)"))
  return d
