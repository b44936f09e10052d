"""Exact evaluation: tabularise a policy in one batch, then OpenSpiel's C++ evaluators.

A tabular policy here is a (S, A) float64 tensor aligned with
`games.infostate_table(game).keys`, zero on illegal actions, rows summing to 1. Any policy
becomes one with `tabularise`:
- a batched callable `fn(info_state (S, D), legal_mask (S, A)) -> probs (S, A)`, e.g. a
  network: one forward pass over every information state;
- an OpenSpiel `policy.Policy` (or pyspiel policy): queried per information state.

Exploitability (two-player zero-sum only) and NashConv come from `pyspiel.exploitability` /
`pyspiel.nash_conv`; `fast_exploitability` uses the compiled-tree evaluator (games.tree)
when the tree fits, which tests check against OpenSpiel's; `exact_values` (and
`fast_exploitabilities`) evaluate several policies in one batched call on it.
`evaluate_learner` is what the run loop logs at each evaluation; `cfr_plus_curve` is the
CFR+ reference of the plots. `deadline(t)` marks the time by which the evaluation in
progress should end (the run loop sets it from the run's evaluation budget);
`seconds_left()` lets an optional part of it (the scheduler's control) stay out when it
would pass it.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import hashlib
import time
from typing import Callable, NamedTuple, Optional, Union

import numpy as np
import pyspiel
import torch
from open_spiel.python import policy as os_policy

from games import infostate_table, load_game
from games.infostates import one_state_per_infostate
from games.tree import compile_tree, tree_fits

# perf_counter time by which the evaluation in progress should end (None: no budget).
_DEADLINE: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar(
    "evaluation_deadline", default=None)


@contextlib.contextmanager
def deadline(t: Optional[float]):
  """Within the block, the evaluation in progress should end by perf_counter time `t`
  (None: no budget)."""
  token = _DEADLINE.set(t)
  try:
    yield
  finally:
    _DEADLINE.reset(token)


def seconds_left() -> Optional[float]:
  """Seconds until the deadline in force (negative once passed), None without one."""
  t = _DEADLINE.get()
  return None if t is None else t - time.perf_counter()


BatchedPolicyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PolicyLike = Union[torch.Tensor, BatchedPolicyFn, os_policy.Policy, pyspiel.Policy]


class PolicyError(ValueError):
  """A policy that is not a valid distribution over legal actions."""


def uniform_table(game_string: str) -> torch.Tensor:
  mask = infostate_table(game_string).legal_mask.double()
  return mask / mask.sum(1, keepdim=True)


def tabularise(game_string: str, pol: PolicyLike, device=None) -> torch.Tensor:
  """(S, A) float64 table of `pol` over every information state, validated."""
  table = infostate_table(game_string)
  if isinstance(pol, torch.Tensor):
    probs = pol.detach().to("cpu", torch.float64)
  elif isinstance(pol, (os_policy.Policy, pyspiel.Policy)):
    states = one_state_per_infostate(game_string)
    probs = torch.zeros(len(table), table.legal_mask.shape[1], dtype=torch.float64)
    for i, key in enumerate(table.keys):
      for a, p in pol.action_probabilities(states[key]).items():
        probs[i, a] = p
  elif callable(pol):
    with torch.no_grad():
      x = table.tensors.to(device) if device is not None else table.tensors
      m = table.legal_mask.to(x.device)
      probs = pol(x, m).detach().to("cpu", torch.float64)
  else:
    raise PolicyError(f"cannot tabularise a {type(pol).__name__}; pass a (S, A) tensor, a "
                      "batched callable or an OpenSpiel policy.Policy")
  return validate_table(game_string, probs)


def validate_table(game_string: str, probs: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
  table = infostate_table(game_string)
  if probs.shape != table.legal_mask.shape:
    raise PolicyError(f"policy table shape {tuple(probs.shape)} != "
                      f"(information states, actions) {tuple(table.legal_mask.shape)}")
  if not torch.isfinite(probs).all():
    raise PolicyError("policy has non-finite probabilities")
  if (probs < -atol).any():
    raise PolicyError("policy has negative probabilities")
  illegal = probs.masked_fill(table.legal_mask, 0).abs().max().item()
  if illegal > atol:
    raise PolicyError(f"policy puts probability {illegal:.3g} on illegal actions")
  sums = probs.sum(1)
  bad = (sums - 1).abs() > atol
  if bad.any():
    i = int(bad.nonzero()[0])
    raise PolicyError(f"probabilities at information state {table.keys[i]!r} sum to "
                      f"{sums[i].item():.9f}, not 1")
  return probs.clamp_min(0.0)


def to_pyspiel_policy(game_string: str, probs: torch.Tensor) -> pyspiel.TabularPolicy:
  table = infostate_table(game_string)
  arr = probs.numpy()
  legal = table.legal_mask.numpy()
  return pyspiel.TabularPolicy({
      key: [(int(a), float(arr[i, a])) for a in np.flatnonzero(legal[i])]
      for i, key in enumerate(table.keys)})


def to_openspiel_tabular(game_string: str, probs: torch.Tensor) -> os_policy.TabularPolicy:
  """The same table as OpenSpiel's Python `TabularPolicy` (for the Python evaluators)."""
  game = load_game(game_string).game
  tab = os_policy.TabularPolicy(game)
  index = infostate_table(game_string).index
  arr = probs.numpy()
  for key, row in tab.state_lookup.items():
    tab.action_probability_array[row] = arr[index[key]]
  return tab


def exploitability(game_string: str, probs: torch.Tensor) -> float:
  sgame = load_game(game_string)
  sgame.require_two_player_zero_sum("exploitability")
  return float(pyspiel.exploitability(sgame.game, to_pyspiel_policy(game_string, probs)))


def nash_conv(game_string: str, probs: torch.Tensor) -> float:
  sgame = load_game(game_string)
  return float(pyspiel.nash_conv(sgame.game, to_pyspiel_policy(game_string, probs)))


def evaluate(game_string: str, pol: PolicyLike) -> dict:
  """Tabularises `pol` and returns nash_conv, exploitability (2p zero-sum) and seconds."""
  t0 = time.perf_counter()
  probs = tabularise(game_string, pol)
  sgame = load_game(game_string)
  out = {"game": game_string}
  nc = nash_conv(game_string, probs)
  if sgame.is_two_player_zero_sum:
    out["exploitability"] = nc / 2.0
  out["nash_conv"] = nc
  out["seconds"] = time.perf_counter() - t0
  return out


def expected_returns(game_string: str, policies: list[PolicyLike]) -> list[float]:
  """Expected returns when player p plays policies[p] (one policy per player)."""
  sgame = load_game(game_string)
  if len(policies) != sgame.num_players:
    raise PolicyError(f"expected {sgame.num_players} policies (one per player), "
                      f"got {len(policies)}")
  table = infostate_table(game_string)
  joint = torch.zeros(table.legal_mask.shape, dtype=torch.float64)
  for p, pol in enumerate(policies):
    rows = table.player == p
    joint[rows] = tabularise(game_string, pol)[rows]
  return list(pyspiel.expected_returns(sgame.new_initial_state(),
                                       to_pyspiel_policy(game_string, joint), -1, True))


def cfr_plus_table(game_string: str, iterations: int) -> torch.Tensor:
  """Average policy of `iterations` of OpenSpiel's C++ CFR+, as a table."""
  if iterations < 1:
    raise ValueError(f"cfr_plus iterations must be >= 1, got {iterations}")
  solver = pyspiel.CFRPlusSolver(load_game(game_string).game)
  for _ in range(iterations):
    solver.evaluate_and_update_policy()
  return tabularise(game_string, solver.average_policy())


class ExactValues(NamedTuple):
  """K policies evaluated exactly: each one's exploitability (None unless the game is
  two-player zero-sum) and NashConv, and on the compiled tree each one's own reach of every
  information state (games.tree.Evaluation.own_reach; None beyond the tree); `evaluated`:
  how many distinct tables the call evaluated (the others were remembered: _Memo)."""
  exploitability: list[Optional[float]]
  nash_conv: list[float]
  own_reach: Optional[torch.Tensor]   # (K, S) float64
  evaluated: int = 0


# Exact values of recently evaluated tables, by content (_Memo): a run's evaluation measures
# the same pi_mix more than once (the deployment's candidates, then the report's mixes).
MEMO_BYTES = 64 << 20


class _Memo:
  """Least-recently-used exact values (NashConv, own reach or None) keyed by the game string
  and a digest of a table's dtype, shape and bytes, up to MEMO_BYTES of own reach. The
  compiled tree's values do not depend on which policies share a batch
  (games.tree.exact), so a value found here is the value a new call would give."""

  def __init__(self, max_bytes: int = MEMO_BYTES):
    self.max_bytes, self.bytes = max_bytes, 0
    self.items: collections.OrderedDict = collections.OrderedDict()

  @staticmethod
  def key(game_string: str, table: torch.Tensor) -> tuple:
    t = table.detach().cpu().contiguous()
    digest = hashlib.blake2b(t.numpy().tobytes(), digest_size=16).hexdigest()
    return game_string, str(t.dtype), tuple(t.shape), digest

  def get(self, key: tuple):
    hit = self.items.get(key)
    if hit is not None:
      self.items.move_to_end(key)
    return hit

  def put(self, key: tuple, nash_conv: float, reach: Optional[torch.Tensor]) -> None:
    size = 0 if reach is None else reach.numel() * reach.element_size()
    if key in self.items or size > self.max_bytes:
      return
    self.items[key] = (nash_conv, reach)
    self.bytes += size
    while self.bytes > self.max_bytes:
      _, (_, old) = self.items.popitem(last=False)
      self.bytes -= 0 if old is None else old.numel() * old.element_size()


_MEMO = _Memo()


def exact_values(game_string: str, policies: list[PolicyLike]) -> ExactValues:
  """Exploitability and NashConv of each policy. On the compiled tree the policies not
  measured recently are evaluated in one batched call (games.tree.exact.Exact), each with the
  values of a call of its own; beyond the tree each goes through OpenSpiel's C++ nash_conv.
  A table equal, bit for bit, to one evaluated recently (or earlier in the same call) is not
  evaluated again (_Memo)."""
  tables = [tabularise(game_string, p) for p in policies]
  two_zs = load_game(game_string).is_two_player_zero_sum
  on_tree = tree_fits(game_string)
  keys = [_Memo.key(game_string, t) for t in tables]
  values, todo = {}, {}  # key -> (NashConv, own reach); key -> a table to evaluate, once
  for k, t in zip(keys, tables):
    hit = values.get(k) or _MEMO.get(k)
    if hit is not None:
      values[k] = hit
    else:
      todo.setdefault(k, t)
  if todo:
    new = list(todo.values())
    if on_tree:
      ev = compile_tree(game_string).evaluate(torch.stack(new))
      found = zip(ev.nash_conv.tolist(), (r.clone() for r in ev.own_reach))
    else:
      found = ((nash_conv(game_string, t), None) for t in new)
    for k, (nc, reach) in zip(todo, found):
      _MEMO.put(k, nc, reach)
      values[k] = (nc, reach)
  got = [values[k] for k in keys]
  ncs = [float(nc) for nc, _ in got]
  reach = torch.stack([r for _, r in got]) if on_tree else None
  return ExactValues([nc / 2.0 if two_zs else None for nc in ncs], ncs, reach, len(todo))


def fast_exploitability(game_string: str, probs: PolicyLike) -> tuple[Optional[float], float]:
  """(exploitability, nash_conv) of a policy; exploitability is None unless the game is
  two-player zero-sum. Uses the compiled tree when it fits, else pyspiel (C++)."""
  return fast_exploitabilities(game_string, [probs])[0]


def fast_exploitabilities(game_string: str,
                          policies: list[PolicyLike]) -> list[tuple[Optional[float], float]]:
  """fast_exploitability of each policy, in one batched call on the tree (exact_values)."""
  ev = exact_values(game_string, policies)
  return list(zip(ev.exploitability, ev.nash_conv))


def evaluate_learner(learner) -> dict:
  """Exact exploitability / NashConv of a Learner's average policy and of its current
  policy when it has one (`current_table`), in one batched call, and its
  `evaluation_extras()`."""
  g = learner.game_string
  current = getattr(learner, "current_table", None)
  tables = [learner.average_table()] + ([] if current is None else [current()])
  (expl, nc), *rest = fast_exploitabilities(g, tables)
  out = {"exploitability": expl, "nash_conv": nc}
  if rest:
    expl, nc = rest[0]
    out.update(exploitability_current=expl, nash_conv_current=nc)
  extras = getattr(learner, "evaluation_extras", None)
  if extras is not None:
    out.update(extras())
  return out


CFR_PLUS_REF_ITERS = 100


@functools.lru_cache(maxsize=8)
def cfr_plus_curve(game_string: str, iterations: int = CFR_PLUS_REF_ITERS):
  """((seconds, iterations, exploitability), ...) of pyspiel CFR+ at doubling iteration
  counts: the tabular reference drawn in the plots."""
  solver = pyspiel.CFRPlusSolver(load_game(game_string).game)
  out, t, it, nxt = [], 0.0, 0, 1
  while it < iterations:
    t0 = time.perf_counter()
    solver.evaluate_and_update_policy()
    t += time.perf_counter() - t0
    it += 1
    if it == nxt or it == iterations:
      probs = tabularise(game_string, solver.average_policy())
      out.append((t, it, fast_exploitability(game_string, probs)[0]))
      nxt *= 2
  return tuple(out)
