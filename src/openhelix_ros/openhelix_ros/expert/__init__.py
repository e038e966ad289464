"""The scripted expert through the graph: core.py turns scene states into plans (from sim's privileged
expert), node.py publishes them as ee_trajectory."""
