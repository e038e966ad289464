"""When the evaluator's first instruction may go out (evaluation/readiness.py), from endpoint counts."""

from __future__ import annotations

from openhelix_ros.evaluation.readiness import GraphCounts, GraphWait, graph_gaps

COMPLETE = GraphCounts(policies=1, latent_consumers=1, latent_producers=1, instruction_listeners=2,
                       instruction_matched=2)


def test_a_complete_graph_has_no_gaps_and_each_missing_part_is_named():
    assert graph_gaps(COMPLETE) == []
    assert graph_gaps(GraphCounts(1, 0, 0, 1, 1)) == []  # the expert: no System 1 consumes latents
    gaps = graph_gaps(GraphCounts(policies=0, latent_consumers=1, latent_producers=0, instruction_listeners=2,
                                  instruction_matched=1))
    assert gaps == ["no policy publishes ee_trajectory",
                    "goal_latent has subscribers but no publisher (System 2 not up)",
                    "1 of 2 instruction subscriber(s) matched"]
    assert graph_gaps(GraphCounts(1, 0, 0, 0, 0)) == ["0 of 0 instruction subscriber(s) matched"]


def test_the_graph_must_stay_complete_for_the_settle_time():
    wait = GraphWait(started=0.0, timeout=60.0, settle=0.5)
    assert not wait.update(0.0, []).done
    assert not wait.update(0.3, ["no policy publishes ee_trajectory"]).done  # a gap restarts the settle time
    assert not wait.update(0.4, []).done
    assert not wait.update(0.8, []).done
    step = wait.update(0.9, [])
    assert step.done and step.gaps == ()


def test_the_wait_ends_at_the_timeout_with_the_gaps_left_and_says_what_it_waits_for():
    wait = GraphWait(started=0.0, timeout=25.0, say_every=10.0)
    gap = ["no policy publishes ee_trajectory"]
    lines = [wait.update(float(t), gap).line for t in range(25)]
    assert [line for line in lines if line] == [
        "waiting for the graph (10 s): no policy publishes ee_trajectory",
        "waiting for the graph (20 s): no policy publishes ee_trajectory"]
    step = wait.update(25.0, gap)
    assert step.done and step.gaps == tuple(gap)
