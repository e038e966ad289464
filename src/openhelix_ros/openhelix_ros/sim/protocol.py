"""CALVIN's long-horizon evaluation protocol, ROS-free.

* Symbolic world states (lights, slider, drawer, where each block is, whether one is grasped) and, per
  task, the conditions under which it can be asked for and its effect.
* Valid initial states: every combination with one or two blocks on the table and at most one block in
  each shelf compartment, nothing grasped (CALVIN's filter).
* ``sample_chains(n, seed)``: the n chains are spread evenly over the initial states; for each state,
  chains are drawn uniformly from the valid ones (every task applicable in turn with exactly one
  matching rule, five different categories), the distribution CALVIN's draw-and-reject sampling has;
  the list is shuffled. Seeded with numpy's PCG64: the same (n, seed) always gives the same chains
  (not CALVIN's exact list, which depends on its legacy numpy seeding).
* ``state_for_condition``: a concrete (robot_obs, scene_obs) for a symbolic state, randomised by a
  generator (block positions and yaw), so rollouts differ per seed while staying valid.
* ``evaluate_chains``: 360 env steps per subtask, a chain stops at its first failure, average length =
  mean number of completed subtasks, success rates for 1..5 completed in a row.

One deliberate difference to CALVIN's table: in CALVIN ``place_in_slider`` with the slider "right"
leads to "slider_right"; here the block goes into the compartment the door leaves open (slider right ->
slider_left), which is where the scripted expert can physically put it, and ``lift_*_slider`` asks for
exactly that compartment to be open, as in CALVIN.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.tasks import COLOURS, TASKS, TaskOracle, check_task_names

EPISODE_LENGTH = 360
CHAIN_LENGTH = 5

# The evaluation protocols a run can follow (evaluation/core.py, the bridge's ``protocol`` parameter).
# calvin: CALVIN's own, EPISODE_LENGTH env steps per subtask, the bridge's configured replanning.
# release: the loop of the released OpenHelix / 3D Diffuser Actor code (online_evaluation_calvin/
# evaluate_policy.py): EP_LEN = 60 policy calls per subtask, each executing up to EXECUTE_LEN = 20 of
# its waypoints open-loop with the oracle asked after every env step (so up to 1200 env steps; 3D
# Diffuser Actor's 19 waypoints make it 1140), positions clipped to the act bounds of the CALVIN
# split's statistics.yaml. The paper's tables (3.27 Only Policy, 3.45 OpenHelix) count this way.
PROTOCOLS = ("calvin", "release")
RELEASE_EPISODE_LENGTH = 60
RELEASE_EXECUTE_LEN = 20


def protocol_budget(protocol: str) -> tuple[int, str]:
    """A protocol's default budget per subtask and what it counts: (360, "env steps") or (60, "policy calls")."""
    if protocol == "calvin":
        return EPISODE_LENGTH, "env steps"
    if protocol == "release":
        return RELEASE_EPISODE_LENGTH, "policy calls"
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def calvin_position_bounds(statistics_path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (low, high) TCP position box of a CALVIN split's ``statistics.yaml``: the first three entries
    of ``act_min_bound`` / ``act_max_bound``, which the release clips every predicted position to.
    ValueError naming the file and what is missing or malformed."""
    import yaml

    try:
        with open(statistics_path) as stream:
            statistics = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read CALVIN statistics {statistics_path}: {error}") from None
    bounds = []
    for key in ("act_min_bound", "act_max_bound"):
        values = statistics.get(key) if isinstance(statistics, dict) else None
        try:
            values = [float(v) for v in values[:3]]
        except (TypeError, ValueError):
            values = []
        if len(values) != 3 or not all(np.isfinite(values)):
            raise ValueError(f"{statistics_path}: {key} must list at least 3 finite numbers (x, y, z first), "
                             f"got {statistics.get(key) if isinstance(statistics, dict) else statistics!r}")
        bounds.append(tuple(values))
    return bounds[0], bounds[1]

TASK_CATEGORIES: dict[str, int] = {}
for _c in COLOURS:
    TASK_CATEGORIES |= {f"rotate_{_c}_block_right": 1, f"rotate_{_c}_block_left": 1,
                        f"push_{_c}_block_right": 1, f"push_{_c}_block_left": 1,
                        f"lift_{_c}_block_table": 4, f"lift_{_c}_block_slider": 5,
                        f"lift_{_c}_block_drawer": 6}
TASK_CATEGORIES |= {"move_slider_left": 2, "move_slider_right": 2, "open_drawer": 3, "close_drawer": 3,
                    "place_in_slider": 7, "place_in_drawer": 7, "turn_on_lightbulb": 8,
                    "turn_off_lightbulb": 8, "turn_on_led": 8, "turn_off_led": 8, "push_into_drawer": 9,
                    "stack_block": 10, "unstack_block": 11}

Rule = tuple[dict, dict]  # (condition, effect); a condition value may be a tuple of allowed values


def _symbolic_rules() -> dict[str, list[Rule]]:
    rules: dict[str, list[Rule]] = {}
    for c in COLOURS:
        key = f"{c}_block"
        on_table: Rule = ({key: "table", "grasped": 0}, {key: "table"})
        for verb, side in itertools.product(("rotate", "push"), ("right", "left")):
            rules[f"{verb}_{c}_block_{side}"] = [on_table]
        grasp = {key: "grasped", "grasped": 1}
        rules[f"lift_{c}_block_table"] = [({key: "table", "grasped": 0}, grasp)]
        rules[f"lift_{c}_block_slider"] = [({key: "slider_left", "slider": "right", "grasped": 0}, grasp),
                                            ({key: "slider_right", "slider": "left", "grasped": 0}, grasp)]
        rules[f"lift_{c}_block_drawer"] = [({key: "drawer", "drawer": "open", "grasped": 0}, grasp)]
    rules["move_slider_left"] = [({"slider": "right", "grasped": 0}, {"slider": "left"})]
    rules["move_slider_right"] = [({"slider": "left", "grasped": 0}, {"slider": "right"})]
    rules["open_drawer"] = [({"drawer": "closed", "grasped": 0}, {"drawer": "open"})]
    rules["close_drawer"] = [({"drawer": "open", "grasped": 0}, {"drawer": "closed"})]
    rules["place_in_slider"] = [
        ({f"{c}_block": "grasped", "slider": side, "grasped": 1}, {f"{c}_block": f"slider_{free}", "grasped": 0})
        for c in COLOURS for side, free in (("right", "left"), ("left", "right"))]
    rules["place_in_drawer"] = [({f"{c}_block": "grasped", "drawer": "open", "grasped": 1},
                                 {f"{c}_block": "drawer", "grasped": 0}) for c in COLOURS]
    rules["stack_block"] = [
        ({f"{top}_block": "grasped", f"{bottom}_block": "table", "grasped": 1},
         {f"{top}_block": "stacked_top", f"{bottom}_block": "stacked_bottom", "grasped": 0})
        for top, bottom in itertools.permutations(COLOURS, 2)]
    rules["unstack_block"] = [
        ({f"{top}_block": "stacked_top", f"{bottom}_block": "stacked_bottom", "grasped": 0},
         {f"{top}_block": "table", f"{bottom}_block": "table"})
        for top, bottom in itertools.permutations(COLOURS, 2)]
    rules["turn_on_lightbulb"] = [({"lightbulb": 0, "grasped": 0}, {"lightbulb": 1})]
    rules["turn_off_lightbulb"] = [({"lightbulb": 1, "grasped": 0}, {"lightbulb": 0})]
    rules["turn_on_led"] = [({"led": 0, "grasped": 0}, {"led": 1})]
    rules["turn_off_led"] = [({"led": 1, "grasped": 0}, {"led": 0})]
    rules["push_into_drawer"] = []
    for c in COLOURS:
        others = [o for o in COLOURS if o != c]
        shelf = ("slider_right", "slider_left")
        rules["push_into_drawer"].append(
            ({f"{c}_block": "table", f"{others[0]}_block": shelf, f"{others[1]}_block": shelf,
              "drawer": "open", "grasped": 0}, {f"{c}_block": "drawer", "grasped": 0}))
    assert set(rules) == set(TASKS)
    return rules


SYMBOLIC_RULES = _symbolic_rules()


def _matches(state: dict, condition: dict) -> bool:
    return all(state[k] in v if isinstance(v, tuple) else state[k] == v for k, v in condition.items())


def next_states(state: dict, task: str) -> list[dict]:
    """The symbolic states ``task`` can lead to from ``state`` (empty: not applicable)."""
    return [{**state, **effect} for condition, effect in SYMBOLIC_RULES[task] if _matches(state, condition)]


def chain_is_valid(state: dict, chain) -> bool:
    """Every task applicable in turn with exactly one matching rule, all categories different."""
    for task in chain:
        options = next_states(state, task)
        if len(options) != 1:
            return False
        state = options[0]
    categories = [TASK_CATEGORIES[t] for t in chain]
    return len(set(categories)) == len(categories)


def initial_conditions() -> list[dict]:
    """All valid symbolic start states, in a fixed order."""
    values = {"led": (0, 1), "lightbulb": (0, 1), "slider": ("right", "left"), "drawer": ("closed", "open"),
              "red_block": ("table", "slider_right", "slider_left"),
              "blue_block": ("table", "slider_right", "slider_left"),
              "pink_block": ("table", "slider_right", "slider_left"), "grasped": (0,)}
    states = []
    for combination in itertools.product(*values.values()):
        blocks = combination[4:7]
        if blocks.count("table") in (1, 2) and blocks.count("slider_right") < 2 and blocks.count("slider_left") < 2:
            states.append(dict(zip(values, combination, strict=True)))
    return states


def sample_initial_condition(rng: np.random.Generator) -> dict:
    states = initial_conditions()
    return dict(states[int(rng.integers(len(states)))])


def _key(state: dict) -> tuple:
    return tuple(sorted(state.items()))


@functools.cache
def _successor(state_key: tuple, task: str) -> tuple | None:
    """The one state ``task`` leads to from this state, or None (not applicable, or ambiguous)."""
    options = next_states(dict(state_key), task)
    return _key(options[0]) if len(options) == 1 else None


@functools.cache
def _completions(state_key: tuple, used_categories: frozenset, remaining: int) -> int:
    """How many valid chains of ``remaining`` more tasks continue from this symbolic state."""
    if remaining == 0:
        return 1
    total = 0
    for task in TASKS:
        category = TASK_CATEGORIES[task]
        if category in used_categories:
            continue
        successor = _successor(state_key, task)
        if successor is not None:
            total += _completions(successor, used_categories | {category}, remaining - 1)
    return total


def _sample_chain(state: dict, rng: np.random.Generator) -> tuple[str, ...]:
    """One chain drawn uniformly from all valid chains from ``state``.

    CALVIN draws 5 distinct tasks uniformly and rejects invalid draws, which is uniform over the valid
    chains too; choosing each next task in proportion to its number of valid completions gives the same
    distribution without the (slow, in Python) rejections."""
    chain: list[str] = []
    used: frozenset = frozenset()
    for remaining in range(CHAIN_LENGTH, 0, -1):
        options, weights = [], []
        for task in TASKS:
            category = TASK_CATEGORIES[task]
            if category in used:
                continue
            successor = _successor(_key(state), task)
            if successor is not None:
                count = _completions(successor, used | {category}, remaining - 1)
                if count:
                    options.append((task, dict(successor), category))
                    weights.append(count)
        weights = np.asarray(weights, dtype=float)
        task, state, category = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        chain.append(task)
        used = used | {category}
    return tuple(chain)


@functools.lru_cache(maxsize=8)
def _chains(n: int, seed: int) -> tuple:
    states = initial_conditions()
    per_state = [len(part) for part in np.array_split(np.arange(n), len(states))]
    results = []
    for index, (state, count) in enumerate(zip(states, per_state, strict=True)):
        rng = np.random.default_rng([seed, index])
        results += [(_key(state), _sample_chain(state, rng)) for _ in range(count)]
    order = np.random.default_rng([seed, len(states)]).permutation(len(results))
    return tuple(results[i] for i in order)


def sample_chains(n: int = 1000, seed: int = 0) -> list[tuple[dict, list[str]]]:
    """``n`` evaluation chains as (symbolic initial state, [5 task names]), deterministic in ``seed``."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return [(dict(state), list(chain)) for state, chain in _chains(int(n), int(seed))]


# ---------------------------------------------------------------------------------------------------
# Symbolic state -> concrete simulator state
# ---------------------------------------------------------------------------------------------------

def _half_height(block: str) -> float:
    return sc.BLOCK_SIZES[block][2] / 2


def _table_positions(count: int, rng: np.random.Generator, min_gap: float = 0.16) -> list[np.ndarray]:
    """``count`` block positions on the table strip, at least ``min_gap`` apart in x so that pushes
    and grasps do not collide with a neighbour."""
    for _ in range(1000):
        xs = rng.uniform(sc.TABLE_REGION_X[0], sc.TABLE_REGION_X[1], size=count)
        if count < 2 or np.min(np.abs(np.diff(np.sort(xs)))) >= min_gap:
            ys = rng.uniform(sc.TABLE_REGION_Y[0], sc.TABLE_REGION_Y[1], size=count)
            return [np.array([x, y]) for x, y in zip(xs, ys, strict=True)]
    raise RuntimeError("could not place blocks on the table")  # pragma: no cover - geometry allows it


def state_for_condition(condition: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Concrete (robot_obs, scene_obs) for a symbolic start condition (blocks on the table, on the
    shelf or in the drawer; grasped/stacked blocks are not start conditions)."""
    robot_obs = np.zeros(15)
    robot_obs[6] = 2 * sc.PANDA_FINGER_MAX
    robot_obs[7:14] = sc.ROBOT_NEUTRAL_JOINTS
    robot_obs[14] = 1.0
    scene_obs = np.zeros(24)
    slider = condition.get("slider", "right")
    scene_obs[0] = rng.uniform(0.0, 0.02) if slider == "right" else rng.uniform(0.32, 0.34)
    drawer_open = condition.get("drawer", "closed") == "open"
    scene_obs[1] = rng.uniform(sc.DRAWER_OPEN_STATE - 0.01, sc.DRAWER_OPEN_STATE + 0.01) if drawer_open \
        else rng.uniform(0.0, 0.01)
    lightbulb = int(condition.get("lightbulb", 0))
    scene_obs[3] = rng.uniform(0.075, 0.08) if lightbulb else rng.uniform(0.0, 0.005)
    scene_obs[4] = lightbulb
    scene_obs[5] = int(condition.get("led", 0))
    names = sc.BLOCK_NAMES
    where = {name: condition.get(name.replace("block_", "") + "_block", "table") for name in names}
    on_table = [n for n in names if where[n] == "table"]
    table_xy = dict(zip(on_table, _table_positions(len(on_table), rng), strict=True))
    for index, name in enumerate(names):
        place = where[name]
        yaw = rng.uniform(-np.pi / 2, np.pi / 2)
        if place == "table":
            xyz = [*table_xy[name], _half_height(name) + 0.0005]
        elif place in ("slider_left", "slider_right"):
            slot = sc.SLIDER_LEFT_SLOT if place == "slider_left" else sc.SLIDER_RIGHT_SLOT
            xyz = [slot[0] + rng.uniform(-0.02, 0.02), slot[1] + rng.uniform(-0.015, 0.015),
                   sc.SHELF_TOP + _half_height(name) + 0.0005]
            # Narrow side along x: a hand grasping across it fits between the shelf's front and back.
            yaw = np.pi / 2 + rng.uniform(-0.4, 0.4)
        elif place == "drawer":
            x = sc.DRAWER_SLOT_X + rng.uniform(-0.03, 0.03)
            xyz = [x, sc.DRAWER_SLOT_Y - scene_obs[1], sc.DRAWER_BOTTOM + 0.01 + _half_height(name) + 0.0005]
            yaw = np.pi / 2 + rng.uniform(-0.4, 0.4)
        else:
            raise ValueError(f"{name}: symbolic place {place!r} is not a start condition "
                             "(use table, slider_left, slider_right or drawer)")
        scene_obs[6 + 6 * index:12 + 6 * index] = [*xyz, 0.0, 0.0, yaw]
    return robot_obs, scene_obs


def conditions_for_task(task: str) -> list[dict]:
    """The valid initial states from which ``task`` can be asked for directly."""
    check_task_names([task])
    return [s for s in initial_conditions() if next_states(s, task)]


# ---------------------------------------------------------------------------------------------------
# Running the protocol
# ---------------------------------------------------------------------------------------------------

@dataclass
class ChainResult:
    initial_state: dict
    tasks: list[str]
    completed: int
    steps: list[int] = field(default_factory=list)  # env steps used by each attempted subtask


@dataclass
class EvaluationSummary:
    chains: list[ChainResult]

    @property
    def average_length(self) -> float:
        return float(np.mean([c.completed for c in self.chains])) if self.chains else 0.0

    @property
    def success_rates(self) -> list[float]:
        """Fraction of chains with at least k subtasks completed, k = 1..5 (their sum = avg. len)."""
        if not self.chains:
            return [0.0] * CHAIN_LENGTH
        return [float(np.mean([c.completed >= k for c in self.chains])) for k in range(1, CHAIN_LENGTH + 1)]

    def to_dict(self) -> dict:
        return {"num_chains": len(self.chains), "average_length": self.average_length,
                "success_rates": self.success_rates,
                "chains": [{"initial_state": c.initial_state, "tasks": c.tasks, "completed": c.completed,
                            "steps": c.steps} for c in self.chains]}


Policy = Callable[[dict, str], object]


def run_subtask(env, policy: Policy, task: str, instruction: str, obs: dict,
                episode_length: int = EPISODE_LENGTH, oracle: TaskOracle | None = None) -> tuple[bool, int, dict]:
    """Roll ``policy(obs, instruction) -> action`` for up to ``episode_length`` steps; success as soon
    as the oracle sees ``task`` completed since the subtask's start. Returns (success, steps, obs)."""
    oracle = oracle or env.tasks
    start_info = env.get_info()
    env.begin_subtask(task)
    for step in range(1, episode_length + 1):
        obs, _, _, info = env.step(policy(obs, instruction))
        if oracle.get_task_info_for_set(start_info, info, {task}):
            return True, step, obs
    return False, episode_length, obs


def evaluate_chains(env, policy: Policy, chains: list[tuple[dict, list[str]]],
                    instruction_for: Callable[[str], str] | None = None,
                    episode_length: int = EPISODE_LENGTH, reset_policy: Callable[[], None] | None = None,
                    progress: Callable[[int, ChainResult], None] | None = None,
                    seed: int = 0) -> EvaluationSummary:
    """CALVIN's protocol over ``chains`` (from ``sample_chains``) with ``policy(obs, instruction)``."""
    from openhelix_ros.sim.language import evaluation_instruction

    instruction_for = instruction_for or evaluation_instruction
    results = []
    for index, (initial_state, tasks) in enumerate(chains):
        check_task_names(tasks)
        obs = env.reset_to_condition(initial_state, seed=seed * 100003 + index)
        result = ChainResult(dict(initial_state), list(tasks), 0)
        for task in tasks:
            if reset_policy is not None:
                reset_policy()
            success, steps, obs = run_subtask(env, policy, task, instruction_for(task), obs, episode_length)
            result.steps.append(steps)
            if not success:
                break
            result.completed += 1
        results.append(result)
        if progress is not None:
            progress(index, result)
    return EvaluationSummary(results)
