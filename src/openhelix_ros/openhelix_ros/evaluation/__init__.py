"""The CALVIN evaluation through topics: core.py is the protocol as a sans-IO state machine, report.py
writes results.json, report.md and plots, node.py serves the run_evaluation action."""
