"""What System 2 hands System 1: a goal latent as a token matrix, and optionally a coarse action chunk.

The dual systems of the OpenHelix survey differ in what crosses between the two systems. OpenHelix and LCB
send one token (the projected hidden state at ``<ACT>``); RoboDual sends every language token after the
vision patches together with its generalist's coarse actions; HiRT a pooled token. :class:`LatentGoal`
holds any of them, and :func:`check_latent_goal` is the one check every receiver applies (the ROS message
conversions, System 1's core, training), so a matrix that does not fit is refused by name everywhere.

Coarse actions are in System 1's own action frame, the frame of its training targets: positions are
offsets from the end-effector position of the observation the latent encodes (with a training-time latent
delay, of the frame System 1 plans from; world axes, metres), rotations are relative to its orientation
(``R_obs^T R_i``; world-frame for a policy with ``rotation_frame: world``), and the gripper is an openness
in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bounds on what one goal may make a receiver allocate (a 7B MLLM's 4096-D state over a 2k-token prompt
# is far below the first; no generalist predicts hundreds of coarse steps).
MAX_LATENT_VALUES = 8 * 1024 * 1024
MAX_LATENT_TOKENS = 4096
MAX_COARSE_ACTIONS = 256


class LatentGoalError(ValueError):
    """A goal latent or coarse action chunk that does not fit what its receiver expects."""


@dataclass(frozen=True)
class CoarseActions:
    """k coarse waypoints: relative positions (k, 3), relative rotation matrices (k, 3, 3), openness (k,)."""

    positions: np.ndarray
    rotations: np.ndarray
    gripper_open: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class LatentGoal:
    """A goal latent of ``num_tokens`` tokens of ``token_dim`` values each, and the coarse actions sent
    with it (None: the system sends none)."""

    tokens: np.ndarray  # (num_tokens, token_dim) float32
    coarse: CoarseActions | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def token_dim(self) -> int:
        return int(self.tokens.shape[1])

    @classmethod
    def from_vector(cls, latent) -> LatentGoal:
        """One token: the single goal latent of OpenHelix and LCB (and of every publisher written before
        goals carried token matrices)."""
        vector = np.asarray(latent, dtype=np.float32).reshape(1, -1)
        return check_latent_goal(cls(tokens=vector))

    def describe(self) -> str:
        coarse = f" + {len(self.coarse)} coarse actions" if self.coarse is not None else ""
        return f"{self.num_tokens} x {self.token_dim} tokens{coarse}"


def check_latent_goal(goal: LatentGoal, token_dim: int | None = None, coarse_actions: int | None = None,
                      what: str = "goal latent") -> LatentGoal:
    """``goal`` with float32 tokens once its shapes and values are sound; LatentGoalError naming the
    mismatch otherwise. ``token_dim``: the width the receiver was built for; ``coarse_actions``: how many
    coarse waypoints it conditions on (0: it takes none and ignores any sent, None: no expectation)."""
    tokens = np.asarray(goal.tokens, dtype=np.float32)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise LatentGoalError(f"{what} must be a (num_tokens >= 1, token_dim >= 1) matrix, got shape {tokens.shape}")
    if tokens.shape[0] > MAX_LATENT_TOKENS:
        raise LatentGoalError(f"{what} has {tokens.shape[0]} tokens, more than the limit of {MAX_LATENT_TOKENS} "
                              "(MAX_LATENT_TOKENS)")
    if tokens.size > MAX_LATENT_VALUES:
        raise LatentGoalError(f"{what} has {tokens.size} values, more than the limit of {MAX_LATENT_VALUES} "
                              "(MAX_LATENT_VALUES)")
    if token_dim is not None and tokens.shape[1] != int(token_dim):
        raise LatentGoalError(f"{what} tokens are {tokens.shape[1]}-D but the receiver takes {int(token_dim)}-D "
                              f"tokens ({tokens.shape[0]} x {tokens.shape[1]} matrix)")
    bad = int(np.count_nonzero(~np.isfinite(tokens)))
    if bad:
        raise LatentGoalError(f"{what} has {bad} NaN or infinite values")
    coarse = goal.coarse
    if coarse is not None:
        coarse = check_coarse_actions(coarse, what)
    if coarse_actions:
        if coarse is None:
            raise LatentGoalError(f"the receiver conditions on {coarse_actions} coarse actions but the {what} "
                                  "carries none")
        if len(coarse) != coarse_actions:
            raise LatentGoalError(f"the receiver conditions on {coarse_actions} coarse actions but the {what} "
                                  f"carries {len(coarse)}")
    return LatentGoal(tokens=tokens, coarse=coarse)


def check_coarse_actions(coarse: CoarseActions, what: str = "goal latent") -> CoarseActions:
    positions = np.asarray(coarse.positions, dtype=np.float32)
    rotations = np.asarray(coarse.rotations, dtype=np.float32)
    gripper = np.asarray(coarse.gripper_open, dtype=np.float32).reshape(-1)
    k = len(positions)
    if positions.shape != (k, 3) or k < 1:
        raise LatentGoalError(f"{what} coarse positions must have shape (k >= 1, 3), got {positions.shape}")
    if k > MAX_COARSE_ACTIONS:
        raise LatentGoalError(f"{what} has {k} coarse actions, more than the limit of {MAX_COARSE_ACTIONS} "
                              "(MAX_COARSE_ACTIONS)")
    if rotations.shape != (k, 3, 3):
        raise LatentGoalError(f"{what} has {k} coarse positions but rotations of shape {rotations.shape}")
    if gripper.shape != (k,):
        raise LatentGoalError(f"{what} has {k} coarse poses but {gripper.size} coarse gripper values")
    for name, values in (("positions", positions), ("rotations", rotations), ("gripper values", gripper)):
        if not np.all(np.isfinite(values)):
            raise LatentGoalError(f"{what} coarse {name} contain NaN or infinite values")
    if np.any((gripper < 0) | (gripper > 1)):
        raise LatentGoalError(f"{what} coarse gripper values must be openness in [0, 1], got "
                              f"{float(gripper.min()):g}..{float(gripper.max()):g}")
    return CoarseActions(positions=positions, rotations=rotations, gripper_open=gripper)


def check_goal_fit(system2_config, system1_config) -> None:
    """ValueError saying what to change when System 1 cannot read the goals System 2 forms: the token
    width, one token against several, the coarse actions."""
    latent, width1, width2 = system2_config.latent, system1_config.latent_dim, system2_config.latent_dim
    if width1 != width2:
        raise ValueError(f"System 2 forms {width2}-D latent tokens but System 1 takes latent_dim {width1}")
    if system1_config.latent_layout == "split" and latent.kind in ("act_tokens", "tokens"):
        raise ValueError(f"System 2's latent {latent.kind!r} has several tokens; System 1 needs latent_layout "
                         "'tokens' (its 'split' layout cuts one vector)")
    if system1_config.coarse_actions and system1_config.coarse_actions != latent.coarse_actions:
        raise ValueError(f"System 1 conditions on {system1_config.coarse_actions} coarse actions but System 2 "
                         f"sends {latent.coarse_actions}")
    if latent.coarse_actions >= system1_config.trajectory_length:
        raise ValueError(f"System 2's {latent.coarse_actions} coarse actions are the next waypoints of the "
                         f"{system1_config.trajectory_length}-waypoint training trajectories: at most "
                         f"{system1_config.trajectory_length - 1}")
