"""The viewer bench's figures from evaluation results (the runs themselves are `openhelix bench viewer`)."""

from openhelix_ros.cli.bench_viewer import _markdown, step_rate


def test_the_step_rate_counts_every_subtask_of_every_chain():
    results = {"chains": [{"subtasks": [{"steps": 100, "elapsed": 10.0}, {"steps": 50, "elapsed": 5.0}]},
                          {"subtasks": [{"steps": 360, "elapsed": 40.0}]}]}
    assert step_rate(results) == (510, 55.0)
    assert step_rate({}) == (0, 0)


def test_the_report_states_each_arm_against_the_graph_alone():
    runs = [{"arm": "none", "run": "r0-none", "steps": 700, "subtask_seconds": 100.0, "steps_per_s": 7.0,
             "cpu_seconds": {}},
            {"arm": "viewer", "run": "r0-viewer", "steps": 700, "subtask_seconds": 105.0, "steps_per_s": 6.667,
             "cpu_seconds": {"viewer": 30.5}}]
    text = _markdown({"rounds": 1, "arms": ["none", "viewer"], "chains": 2, "cpus": 2, "runs": runs,
                      "steps_per_s": {"none": 7.0, "viewer": 6.667}, "slowdown": {"viewer": 0.0476}, "note": ""})
    assert "| viewer | 6.67 | -4.8% |" in text and "| r0-viewer | 6.67 | 700 | 105 | 30.5 |  |" in text
