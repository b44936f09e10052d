"""Learned per-state mixing of pi_rm and the average policy (docs/scheduler.md)."""

from armac_spiel.scheduler.config import (MODES, MetaRegretConfig, PolicyMixerConfig,
                                          RegularizationConfig, ReplayConfig, SchedulerConfig,
                                          SchedulerSuiteConfig, StateKeyingConfig,
                                          UtilityConfig, from_dict)
from armac_spiel.scheduler.meta_regret import MetaRegretManager
from armac_spiel.scheduler.mixer import mix_policies, mixing_stats, normalise, sched_lambda
from armac_spiel.scheduler.network import SchedulerNet, discrete_logits_to_lambda, gumbel_tau
from armac_spiel.scheduler.state_keys import StateKeyer
from armac_spiel.scheduler.trainer import SchedulerTrainer
from armac_spiel.scheduler.utilities import (UtilityComputer, advantage_utilities,
                                             best_response_utilities, bin_utilities,
                                             compute_utilities, discounted_returns)
from armac_spiel.scheduler.lambdas import LambdaSource
from armac_spiel.scheduler.deployment import BRGate, Deployment
from armac_spiel.scheduler.strategies import (BestResponseUpdate, BRCriticUpdate, SampledUpdate,
                                              Update, UpdateStrategy)
from armac_spiel.scheduler.metrics import Cost, SchedulerMetrics
from armac_spiel.scheduler.protocol import SchedulerHooks
from armac_spiel.scheduler.facade import Scheduler, make_scheduler
