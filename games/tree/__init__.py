"""Compiled game trees: tensor sampling and exact policy evaluation, up to about 10^7 nodes.

- `arrays`: `TreeArrays`, the compact storage (a few integers per node, smallest widths).
- `cache`: the on-disk cache of compiled trees ($ARMAC_SPIEL_CACHE).
- `compile`: `compile_tree(game_string)` gives a game's `GameTree` (memory, disk cache, or
  one walk of the OpenSpiel tree); `tree_fits` says whether a game is small enough.
- `game_tree`: `GameTree`, the compiled tree as tensors: node and information-state tables,
  encodings, tabular policies, exact evaluation.
- `exact`: `Exact` evaluates tabular policies exactly, one (S, A) or K (K, S, A) at once, in
  float64 on CPU or CUDA (expected returns, best responses, NashConv, CFR-BR's
  counterfactual values).
- `sampler`: `TreeSampler` plays B episodes in lockstep with array gathers only.
"""

from games.tree.arrays import CHANCE, DECISION, TERMINAL, TreeArrays
from games.tree.compile import (DEFAULT_MAX_NODES, compile_tree, count_nodes, knuth_estimate,
                                traverse, tree_fits)
from games.tree.exact import BestResponseCFV, Evaluation, Exact, exact_q
from games.tree.game_tree import GameTree
from games.tree.sampler import TreeSampler
