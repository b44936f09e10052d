"""`GameTree`: a compiled tree (games.tree.arrays.TreeArrays) as torch tensors.

Node tables, the information-state table, the encodings gathered from the views (histories
and information-state tensors of node ids) with their padded `*_ext` tables, tabular
policies (`tabulate`, `uniform_policy`, `to_pyspiel_policy`), and exact evaluation through
games.tree.exact.Exact.
"""

from __future__ import annotations

import functools

import numpy as np
import pyspiel
import torch

from games.infostates import InfoStateTable
from games.sampler import PolicyFn, StepBatch
from games.spiel import load_game
from games.tree.arrays import CHANCE, DECISION, TreeArrays
from games.tree.exact import BestResponseCFV, Evaluation, Exact, one_thread


class GameTree:
  """A compiled game tree; node 0 is the root, ids are in breadth-first order.

  Node tables are torch tensors over the arrays of `self.arrays` (games.tree.arrays). Dense
  forms kept for small trees (`children`, `chance_outcome`, `chance_prob`, `returns`,
  `legal_mask`, `history`, the `*_ext` tables) are built on first use; their cost is in
  their docstrings (M nodes, W children columns, N players, D tensor width). Exact
  evaluation lives in `exact` (games.tree.exact.Exact, CPU) and `exact_on(device)`."""

  def __init__(self, arrays: TreeArrays):
    self.arrays = a = arrays
    self.game_string = a.game_string
    self.sgame = load_game(a.game_string)
    self.num_players = a.num_players
    self.num_actions = a.num_actions
    self.num_nodes = a.num_nodes
    self.num_infostates = a.num_infostates
    self.num_children = torch.from_numpy(a.num_children)  # (M,) smallest integer type
    self.first_child = torch.from_numpy(a.first_child)  # (M,) int64
    self.view_tensors = torch.from_numpy(a.view_tensors)  # (V, D) float32
    s = a.num_infostates
    self.info_tensors = self.view_tensors[:s]           # (S, D) float32
    self.info_legal = torch.from_numpy(a.info_legal)    # (S, A) bool
    self.info_player = torch.from_numpy(a.info_player.astype(np.int64))  # (S,) long
    self.info_keys = a.info_keys
    self.depth_bounds = list(a.depth_bounds)  # nodes at depth d: [bounds[d], bounds[d+1])
    self._exact: dict[str, Exact] = {}

  def __repr__(self) -> str:
    return (f"GameTree({self.game_string!r}, nodes={self.num_nodes}, "
            f"infostates={self.num_infostates})")

  @functools.cached_property
  def table(self) -> InfoStateTable:
    """The information states as a games.InfoStateTable (equal to infostate_table's)."""
    return InfoStateTable(self.game_string, self.info_keys, self.info_tensors,
                          self.info_legal, self.info_player,
                          int((self.arrays.infostate >= 0).sum()))

  # Structure (int64 tensors, 8 M bytes each, made on first use; `arrays` holds them
  # compactly).
  @functools.cached_property
  def kind(self) -> torch.Tensor:
    """(M,) int64: CHANCE, DECISION or TERMINAL."""
    return torch.from_numpy(self.arrays.kind.astype(np.int64))

  @functools.cached_property
  def player(self) -> torch.Tensor:
    """(M,) int64: acting player, -1 where none acts."""
    return torch.from_numpy(self.arrays.player.astype(np.int64))

  @functools.cached_property
  def infostate(self) -> torch.Tensor:
    """(M,) int64: information-state id (row of the table), -1 where none acts."""
    return torch.from_numpy(self.arrays.infostate.astype(np.int64))

  @functools.cached_property
  def depth(self) -> torch.Tensor:
    """(M,) int64."""
    return torch.from_numpy(self.arrays.depth.astype(np.int64))

  @functools.cached_property
  def parent(self) -> torch.Tensor:
    """(M,) int64, -1 at the root."""
    return torch.from_numpy(self.arrays.parent)

  @functools.cached_property
  def parent_slot(self) -> torch.Tensor:
    """(M,) int64: the column of each node in children[parent], -1 at the root."""
    return torch.from_numpy(self.arrays.column)

  @functools.cached_property
  def children(self) -> torch.Tensor:
    """(M, W) int64 (8 M W bytes): children by action (decision) or outcome slot, -1."""
    a = self.arrays
    out = np.full((a.num_nodes, a.width), -1, dtype=np.int64)
    out[a.parent[1:], a.column[1:]] = np.arange(1, a.num_nodes)
    return torch.from_numpy(out)

  def _chance_slots(self, values, fill, dtype) -> torch.Tensor:
    a = self.arrays
    out = np.full((a.num_nodes, a.width), fill, dtype=dtype)
    c = np.flatnonzero(a.kind[a.parent[1:]] == CHANCE) + 1
    out[a.parent[c], a.column[c]] = values[c]
    return torch.from_numpy(out)

  @functools.cached_property
  def chance_outcome(self) -> torch.Tensor:
    """(M, W) int64: chance outcome ids by slot, -1."""
    return self._chance_slots(self.arrays.action, -1, np.int64)

  @functools.cached_property
  def chance_prob(self) -> torch.Tensor:
    """(M, W) float64: chance probabilities by slot, 0."""
    a = self.arrays
    return self._chance_slots(a.edge_probs[a.edge_prob_id], 0.0, np.float64)

  @functools.cached_property
  def returns(self) -> torch.Tensor:
    """(M, N) float64: terminal returns, 0 elsewhere."""
    a = self.arrays
    return torch.from_numpy(a.return_values[a.return_id])

  @functools.cached_property
  def legal_mask(self) -> torch.Tensor:
    """(M, A) bool: legal actions at decision nodes (M A bytes)."""
    return self.legal_ext[:-1]

  @functools.cached_property
  def view(self) -> torch.Tensor:
    """(M, N) int64: row of view_tensors per player at decision nodes, -1 elsewhere."""
    return torch.from_numpy(self.arrays.view.astype(np.int64))

  # Encodings. Views exist at decision nodes only: elsewhere the history is zeros.
  @functools.cached_property
  def _views_ext(self) -> torch.Tensor:
    return torch.cat([self.view_tensors, torch.zeros(1, self.view_tensors.shape[1])])

  def history_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., N*D) float32 history encodings (every player's information-state tensor) of
    decision node ids, gathered from the views; other nodes and -1 give zeros."""
    v = torch.from_numpy(self.arrays.view)
    ids = torch.where(nodes >= 0, nodes, 0).reshape(-1)
    rows = torch.index_select(v, 0, ids).long()
    rows = torch.where((nodes.reshape(-1, 1) >= 0) & (rows >= 0), rows, len(self.view_tensors))
    return torch.index_select(self._views_ext, 0, rows.reshape(-1)).view(*nodes.shape, -1)

  def info_state_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., D) float32 acting player's information-state tensors (-1 or no decision: 0)."""
    ids = torch.where(nodes >= 0, nodes, 0).reshape(-1)
    s = torch.index_select(torch.from_numpy(self.arrays.infostate), 0, ids).long()
    s = torch.where((nodes.reshape(-1) >= 0) & (s >= 0), s, self.num_infostates)
    return torch.index_select(self.info_ext, 0, s).view(*nodes.shape, -1)

  @functools.cached_property
  def history(self) -> torch.Tensor:
    """(M, N*D) float32 (4 M N D bytes): history encodings of every node (history_of)."""
    return self.history_of(torch.arange(self.num_nodes))

  @functools.cached_property
  def history_ext(self) -> torch.Tensor:
    """(M+1, N*D) float32 (4 (M+1) N D bytes): `history` and a zero row (id -1)."""
    return self.history_of(torch.arange(-1, self.num_nodes).roll(-1))

  def prev_actions(self, k: int) -> torch.Tensor:
    """(M, k) int64: the last k decision actions on the path to each node, the latest
    first (chance outcomes skipped), -1 where the path holds fewer."""
    prev = torch.full((self.num_nodes, k), -1, dtype=torch.long)
    bounds, kind, parent, slot = self.depth_bounds, self.kind, self.parent, self.parent_slot
    for d in range(1, len(bounds) - 1):
      nodes = torch.arange(bounds[d], bounds[d + 1])
      if not len(nodes):
        continue
      par = parent[nodes]
      shifted = torch.cat([slot[nodes].unsqueeze(1), prev[par, :k - 1]], 1)
      prev[nodes] = torch.where((kind[par] == DECISION).unsqueeze(1), shifted, prev[par])
    return prev

  @functools.cached_property
  def info_ext(self) -> torch.Tensor:
    """(S+1, D) float32: the information-state tensors and a zero row (id -1)."""
    return torch.cat([self.info_tensors, torch.zeros(1, self.info_tensors.shape[1])])

  @functools.cached_property
  def node_info_ext(self) -> torch.Tensor:
    """(M+1, D) float32 (4 (M+1) D bytes): the acting player's information-state tensor at
    each node (zeros where no player acts) and a zero row (id -1)."""
    return self.info_state_of(torch.arange(-1, self.num_nodes).roll(-1))

  @functools.cached_property
  def legal_ext(self) -> torch.Tensor:
    """(M+1, A) bool (M A bytes): legal actions of each node (none where no player acts)
    and a row of False (id -1)."""
    ext = torch.cat([self.info_legal, torch.zeros(1, self.num_actions, dtype=torch.bool)])
    s = torch.from_numpy(self.arrays.infostate).long()
    s = torch.cat([torch.where(s >= 0, s, self.num_infostates),
                   torch.tensor([self.num_infostates])])
    return ext[s]

  # Policies.
  def tabulate(self, policy_fn: PolicyFn, device=None) -> torch.Tensor:
    """(S, A) float64 CPU probabilities of a batched policy at every information state."""
    batch = StepBatch(self.info_tensors, self.info_legal, self.info_player,
                      torch.arange(self.num_infostates), 0)
    if device is not None:
      batch = StepBatch(*[x.to(device) for x in batch[:4]], 0)
    with torch.no_grad(), one_thread():
      probs = policy_fn(batch)
    return probs.detach().to("cpu", torch.float64)

  def uniform_policy(self) -> torch.Tensor:
    """(S, A) float64 uniform policy over the legal actions."""
    m = self.info_legal.double()
    return m / m.sum(1, keepdim=True)

  def to_pyspiel_policy(self, probs: torch.Tensor) -> pyspiel.TabularPolicy:
    """pyspiel.TabularPolicy with the legal-action probabilities of `probs` (S, A)."""
    p = probs.detach().to("cpu", torch.float64).numpy()
    legal = self.info_legal.numpy()
    return pyspiel.TabularPolicy({
        k: [(int(a), float(p[s, a])) for a in np.flatnonzero(legal[s])]
        for s, k in enumerate(self.info_keys)})

  # Exact evaluation (games.tree.exact.Exact): one policy (S, A) or K policies (K, S, A).
  @property
  def exact(self) -> Exact:
    """The exact evaluator on CPU."""
    return self.exact_on("cpu")

  def exact_on(self, device) -> Exact:
    """The exact evaluator on `device` (built once per device)."""
    key = str(torch.device(device))
    if key not in self._exact:
      self._exact[key] = Exact(self.arrays, device)
    return self._exact[key]

  def reach(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, N+1) float64 reach of every node by each player and chance (Exact.reach)."""
    return self.exact.reach(probs)

  def expected_returns(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64 expected returns when every player follows `probs` (S, A)."""
    return self.exact.expected_returns(probs)

  def best_response_values(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64: each player's best-response value against the others' `probs`."""
    return self.exact.best_response_values(probs)

  def action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    """(M, A) float64 action values of `player` at every decision node (Exact)."""
    return self.exact.action_values(probs, player)

  def best_response_cfv(self, probs: torch.Tensor) -> BestResponseCFV:
    """Best responses to `probs` and the counterfactual values against them."""
    return self.exact.best_response_cfv(probs)

  def evaluate(self, probs: torch.Tensor) -> Evaluation:
    """Values, best-response values and own reach of K policies (K, S, A) in one pass."""
    return self.exact.evaluate(probs)

  def nash_conv(self, probs: torch.Tensor):
    """Sum over players of best-response value minus on-policy value: a float for one
    policy (S, A), a (K,) tensor for K policies (K, S, A)."""
    return self.exact.nash_conv(probs)

  def exploitability(self, probs: torch.Tensor):
    """nash_conv / 2; two-player zero-sum games only."""
    self.sgame.require_two_player_zero_sum("exploitability")
    return self.nash_conv(probs) / self.num_players
