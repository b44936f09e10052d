"""ARMAC's training rows as typed records, and the tables that turn their ids into encodings.

Each record is a NamedTuple of tensors with one row per entry of dim 0 (as OpenSpiel's
`AdvantageMemory` in pytorch/deep_cfr.py); a field a learner does not fill is None, and a
replay (armac_spiel.buffers.TensorBuffer) stores only the others. With a compiled tree (the
tree sampler) rows carry ids in place of encodings: node ids for the critic (-1: padding),
information-state ids for W and the actor. `TreeTables` gathers the encodings they stand
for, so a replay of ids holds the same rows as one of encodings in a fraction of the memory
(experiments/bench_checkpoint.py).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor


class CriticRows(NamedTuple):
  """Episodes padded to the game's longest (E, T, ...): the critic's replay rows."""
  player: Tensor                  # (E, T) long, -1 on padding
  action: Tensor                  # (E, T) long, 0 on padding
  valid: Tensor                   # (E, T) bool
  returns: Tensor                 # (E, N) float32
  mu: Optional[Tensor] = None     # (E, T) behaviour probability of the action (retrace)
  node: Optional[Tensor] = None   # (E, T) compiled-tree node ids (-1: padding), or
  history: Optional[Tensor] = None  # (E, T, N*D) history encodings,
  info: Optional[Tensor] = None   # (E, T, D) information-state encodings and
  mask: Optional[Tensor] = None   # (E, T, A) legal masks


class RegretRows(NamedTuple):
  """Regret targets r^j(s, .) at the learning player's states (one row per state visit)."""
  target: Tensor                  # (R, A) float32, 0 at illegal actions
  weight: Tensor                  # (R,) float32 correction of the learner's own reach
  j: Tensor                       # (R,) long epoch of the policy j that was replayed
  player: Optional[Tensor] = None  # (R,) long acting player (read by BootstrapFit)
  sid: Optional[Tensor] = None    # (R,) long information-state ids, or
  info: Optional[Tensor] = None   # (R, D) encodings and
  mask: Optional[Tensor] = None   # (R, A) legal masks


class PolicyRows(NamedTuple):
  """Mean-policy targets pi^t(s) at the opponent's states of the current groups."""
  probs: Tensor                   # (R, A) float32
  weight: Tensor                  # (R,) float32 correction of the learner's own reach
  epoch: Tensor                   # (R,) long epoch t of the policy
  sid: Optional[Tensor] = None    # (R,) long information-state ids, or
  info: Optional[Tensor] = None   # (R, D) encodings and
  mask: Optional[Tensor] = None   # (R, A) legal masks


def prev_actions_onehot(prev: Tensor, num_actions: int) -> Tensor:
  """(..., k) previous decision actions (latest first, -1: none) -> (..., k * A) one-hots
  (zeros where there is none): the part of the critic's input set by critic_prev_actions."""
  onehot = torch.nn.functional.one_hot(prev.clamp_min(0), num_actions).float()
  return (onehot * (prev >= 0).unsqueeze(-1)).flatten(-2)


def episode_prev_actions(action: Tensor, k: int) -> Tensor:
  """(B, T) decision actions of episodes (-1: padding) -> (B, T, k): at each step the k
  previous decision actions of its episode, the latest first, -1 where there are fewer."""
  b, t = action.shape
  prev = torch.full((b, t, k), -1, dtype=torch.long)
  for j in range(1, min(k, t - 1) + 1):
    prev[:, j:, j - 1] = action[:, :t - j]
  return prev


def critic_history(history: Tensor, action: Tensor, k: int, num_actions: int) -> Tensor:
  """The critic's input at each step of episodes: the history encodings (B, T, H), then
  (k > 0, critic_prev_actions) the one-hots of the k previous decision actions (B, T, k A).
  Every player's information-state tensor leaves out an action nobody has seen yet (the
  first mover's in a turn-based simultaneous-move game); the previous actions tell those
  nodes apart."""
  if not k:
    return history
  return torch.cat([history, prev_actions_onehot(episode_prev_actions(action, k), num_actions)
                    .to(history.device)], -1)


def to_device(rows: NamedTuple, device) -> NamedTuple:
  """The record with every tensor on `device` (None fields stay None)."""
  return type(rows)(*(None if v is None else v.to(device) for v in rows))


# Per-node encoding tables up to this many bytes are built whole; larger ones (a tree of
# millions of nodes: 4 M N D bytes for the histories) are gathered from the tree's per-player
# views on each read (games.tree.GameTree.history_of), the same values.
MATERIALISE_BYTES = 512 * 2**20


class NodeGather:
  """A per-node encoding table read by index without being built: `table[ids]` gathers the
  rows of node ids (-1: the zero row) through `gather` on CPU, then moves them to `device`."""

  def __init__(self, gather, device):
    self.gather = gather
    self.device = torch.device(device)

  def __getitem__(self, ids: Tensor) -> Tensor:
    return self.gather(ids.cpu()).to(self.device)


class TreeTables:
  """A compiled tree's encodings by id, on the learner's device: per node (index -1, the
  last row, is padding's zero row) and per information state. The per-node encodings are
  tensors up to MATERIALISE_BYTES, else NodeGather views of the tree."""

  def __init__(self, tree, device, prev_actions: int = 0):
    self.tree = tree
    width = tree.view_tensors.shape[1] * (tree.num_players + 1)  # history (N D) and info (D)
    if 4 * (tree.num_nodes + 1) * width <= MATERIALISE_BYTES:
      self.history = tree.history_ext.to(device)
      self.node_info = tree.node_info_ext.to(device)
    else:
      self.history = NodeGather(tree.history_of, device)
      self.node_info = NodeGather(tree.info_state_of, device)
    self.node_mask = tree.legal_ext.to(device)
    self.state_info = tree.info_tensors.to(device)
    self.state_mask = tree.info_legal.to(device)
    self.state_info_ext = tree.info_ext.to(device)  # zero row at -1: padding's id
    self.node_sid = torch.cat([tree.infostate, torch.tensor([-1])]).to(device)  # -1 -> -1
    if prev_actions:  # the critic's input: see critic_history
      self.history = WithPrevActions(self.history, tree, prev_actions, device)

  def node_inputs(self, rows: CriticRows) -> CriticRows:
    """Critic rows with the encodings of their node ids (rows that hold them: as they are)."""
    if rows.info is not None:
      return rows
    n = rows.node
    return rows._replace(history=self.history[n], info=self.node_info[n],
                         mask=self.node_mask[n])

  def state_inputs(self, rows):
    """W's or the actor's rows with the encodings and legal masks of their state ids."""
    if rows.info is not None:
      return rows
    return rows._replace(info=self.state_info[rows.sid], mask=self.state_mask[rows.sid])


class WithPrevActions:
  """A per-node table read by index (`table[ids]`, -1: padding), each row followed by the
  one-hots of the node's k previous decision actions (critic_history's encoding): the
  critic's input with critic_prev_actions = k. Keeps the actions (k ids a node), not the
  one-hots."""

  def __init__(self, table, tree, k: int, device):
    self.table, self.num_actions = table, tree.num_actions
    self.prev = torch.cat([tree.prev_actions(k), torch.full((1, k), -1)]).to(device)

  def __getitem__(self, ids: Tensor) -> Tensor:
    rows = self.table[ids]
    return torch.cat([rows, prev_actions_onehot(self.prev[ids.to(self.prev.device)],
                                                self.num_actions).to(rows.device)], -1)
