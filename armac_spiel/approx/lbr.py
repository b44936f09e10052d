"""Local best response (LBR; Lisy & Bowling, arXiv 1612.07547) for two-player poker.

At each of its information states I, LBR computes the opponent's range: every history of I
(the opponent's possible private cards), weighted by chance's probabilities and the frozen
policy's probabilities of the opponent's actions along it. It then values each action of
the usual abstraction by looking one action ahead and assuming that afterwards both players
only check or call to the showdown:
  fold:  its return now;
  call:  the expected showdown return after checking/calling down;
  raise: for each history, the opponent folds with its policy's probability and otherwise
         calls, after which both check/call down (the paper's fp * pot + (1 - fp) * ...,
         with each opponent hand weighted by its own fold probability).
It plays the best of these (ties: call, then raise, then fold). Chance cards still to come are
enumerated while at most `max_leaves` continuations remain, and sampled (from a fixed seed)
beyond. LBR is one fixed strategy, so its value by sampled play is a lower
bound on the best response's value. Decisions are computed once per information state,
when sampled play first reaches it.

Games: kuhn_poker, leduc_poker and universal_poker with limit betting or a no-limit game
abstracted to fold, call, pot and all-in (bettingAbstraction=fcpa): the abstraction is
the game's own action set there. Other games raise `NotPokerError`.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pyspiel

from armac_spiel.approx.budget import Budget, Estimate
from armac_spiel.approx.histories import HistoryCache
from armac_spiel.approx.responder import sampled_value

POKER_GAMES = ("kuhn_poker", "leduc_poker", "universal_poker")


class NotPokerError(ValueError):
  """LBR asked for a game it does not apply to."""


def check_applies(game_string: str) -> None:
  """Raises NotPokerError unless LBR applies to the game."""
  base = re.sub(r"\(.*", "", game_string.strip())
  hint = (f"--method=lbr (local best response) applies to two-player poker only: "
          f"{', '.join(POKER_GAMES)} (universal_poker with betting=limit, or betting=nolimit "
          "with bettingAbstraction=fcpa)")
  if base not in POKER_GAMES:
    raise NotPokerError(f"{hint}; {game_string!r} is not one of them. Use --method=learned_br "
                        "for it.")
  game = pyspiel.load_game(game_string)
  if game.num_players() != 2:
    raise NotPokerError(f"{hint}; {game_string!r} has {game.num_players()} players")
  if base == "universal_poker":
    params = game.get_parameters()
    if (params.get("betting") == "nolimit" and
        params.get("bettingAbstraction", "fullgame") == "fullgame"):
      raise NotPokerError(f"{hint}; {game_string!r} is no-limit with every bet size as an "
                          "action: add bettingAbstraction=fcpa to the game string")


class _Roles:
  """Fold / call / raise actions at a poker state."""

  def __init__(self, game_string: str):
    self.kuhn = re.sub(r"\(.*", "", game_string.strip()) == "kuhn_poker"

  def _kuhn_facing(self, state) -> bool:
    return 1 in state.history()[2:]

  def fold(self, state):
    if self.kuhn:
      return 0 if self._kuhn_facing(state) else None
    return 0 if 0 in state.legal_actions() else None

  def call(self, state) -> int:
    if self.kuhn:
      return 1 if self._kuhn_facing(state) else 0
    return 1

  def raises(self, state) -> list[int]:
    if self.kuhn:
      return [] if self._kuhn_facing(state) else [1]
    return [a for a in state.legal_actions() if a >= 2]


class LBR:
  """LBR's decisions per information state of either player, as the `ActFn` of a seat."""

  def __init__(self, cache: HistoryCache, game_string: str, seed: int,
               max_leaves: int = 64):
    check_applies(game_string)
    self.cache = cache
    self.roles = _Roles(game_string)
    self.max_leaves = max_leaves
    self.rng = np.random.default_rng([seed, 0x1B2])
    self.choice = [np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)]
    self._private: dict[tuple[int, int], bool] = {}
    self.decisions = 0

  def act_fn(self, player: int):
    def act(ids: np.ndarray, legal: np.ndarray) -> np.ndarray:
      choice = self._choices(player, ids)
      probs = np.zeros(legal.shape)
      probs[np.arange(ids.size), choice] = 1.0
      return probs
    return act

  def _choices(self, player: int, ids: np.ndarray) -> np.ndarray:
    reg = self.cache.registries[player]
    have = self.choice[player]
    if have.size < len(reg):
      have = self.choice[player] = np.concatenate(
          [have, np.full(len(reg) - have.size, -1, dtype=np.int64)])
    for i in np.unique(ids[have[ids] < 0]).tolist():
      have[i] = self.decide(self.cache.state_of(player, i))
    return have[ids]

  # ------------------------------------------------------------------ one decision
  def _is_private(self, player: int, k: int, state: pyspiel.State) -> bool:
    """Whether `player` does not observe the k-th chance event (probed once at `state`,
    a chance node: two outcomes, same information-state string afterwards)."""
    key = (player, k)
    if key not in self._private:
      outs = [a for a, _ in state.chance_outcomes()]
      self._private[key] = len(outs) > 1 and (
          state.child(outs[0]).information_state_string(player) ==
          state.child(outs[1]).information_state_string(player))
    return self._private[key]

  def _range(self, state: pyspiel.State):
    """[(history state, weight)] of the player's information state at `state`: the
    opponent's private chance outcomes varied, weighted by chance and the opponent's policy."""
    me = state.current_player()
    opp = 1 - me
    alts = [(self.cache.game.new_initial_state(), 1.0, [])]
    k = 0
    for action in state.history():
      nxt = []
      chance = alts[0][0].is_chance_node()
      private = chance and self._is_private(me, k, alts[0][0])
      for st, w, acts in alts:
        if chance:
          outs = dict(st.chance_outcomes())
          for o in (outs if private else [action]):
            if o in outs:
              nxt.append((st.child(o), w * outs[o], acts))
        elif action in st.legal_actions():
          nxt.append((st.child(action), w,
                      acts + [(st, action)] if st.current_player() == opp else acts))
      k += chance
      alts = nxt
    key = state.information_state_string(me)
    alts = [a for a in alts if a[0].information_state_string(me) == key]
    weights = np.array([w for _, w, _ in alts])
    steps = [(j, st, a) for j, (_, _, acts) in enumerate(alts) for st, a in acts]
    if steps:
      probs = self.cache.policy_at(opp, [st for _, st, _ in steps])
      for (j, _, a), pr in zip(steps, probs):
        weights[j] *= pr[a]
    return [st for st, _, _ in alts], weights

  def _checkdown(self, state: pyspiel.State, me: int, leaves: int = 0) -> float:
    """Expected return of `me` when both check/call to the end. At a chance node with k
    outcomes and a budget of B leaves (max_leaves at the start) the outcomes are enumerated
    when k <= B, each with B // k, and otherwise B of them are sampled, each with 1."""
    budget = leaves or self.max_leaves
    while not state.is_terminal():
      if state.is_chance_node():
        outs = state.chance_outcomes()
        if len(outs) <= budget:
          return sum(p * self._checkdown(state.child(o), me, max(budget // len(outs), 1))
                     for o, p in outs)
        a, p = zip(*outs)
        draws = self.rng.choice(len(a), size=budget, p=np.asarray(p) / sum(p))
        return float(np.mean([self._checkdown(state.child(a[i]), me, 1) for i in draws]))
      state = state.child(self.roles.call(state))
    return state.returns()[me]

  def decide(self, state: pyspiel.State) -> int:
    """LBR's action at the information state of `state` (a decision state)."""
    self.decisions += 1
    me = state.current_player()
    opp = 1 - me
    hists, w = self._range(state)
    if w.sum() <= 0:  # the policy never reaches here: any action is a best response
      return self.roles.call(state)
    w = w / w.sum()
    values = {}
    fold = self.roles.fold(state)
    if fold is not None:
      values[fold] = float(sum(wi * h.child(fold).returns()[me] for h, wi in zip(hists, w)))
    call = self.roles.call(state)
    values[call] = float(sum(wi * self._checkdown(h.child(call), me) for h, wi in zip(hists, w)))
    for r in self.roles.raises(state):
      after = [h.child(r) for h in hists]
      total = 0.0
      facing = [s for s in after if not s.is_terminal() and not s.is_chance_node()
                and s.current_player() == opp]
      pf = {}
      if facing:
        probs = self.cache.policy_at(opp, facing)
        for s, pr in zip(facing, probs):
          f = self.roles.fold(s)
          pf[id(s)] = (pr[f] if f is not None else 0.0, f)
      for s, wi in zip(after, w):
        p_fold, f = pf.get(id(s), (0.0, None))
        v = self._checkdown(s, me) if f is None else (
            p_fold * s.child(f).returns()[me] +
            (1 - p_fold) * self._checkdown(s.child(self.roles.call(s)), me))
        total += wi * v
      values[r] = total
    best = max(values.values())
    for a in (call, *self.roles.raises(state), *([fold] if fold is not None else [])):
      if values[a] >= best - 1e-12:
        return a
    return call


def lbr(cache: HistoryCache, game_string: str, budget: Budget, seed: int) -> Estimate:
  """LBR in both seats against the cache's frozen policy, measured by sampled play."""
  t0 = time.perf_counter()
  responder = LBR(cache, game_string, seed)
  sv = sampled_value(cache, [responder.act_fn(0), responder.act_fn(1)], budget, seed)
  return Estimate(method="lbr", exploitability=sv.exploitability, ci95=sv.exploitability_ci95,
                  br_values=sv.values, br_ci95=sv.ci95, train_episodes=0,
                  eval_episodes=sv.episodes, seconds=time.perf_counter() - t0, train_s=0.0,
                  eval_s=sv.seconds, infostates=responder.decisions,
                  histories=cache.expanded)
