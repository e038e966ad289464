# OpenHelix-ROS. Every target sets up what is missing first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Keep ROS traffic on loopback and ROS logs inside the project.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_HOME ?= $(CURDIR)/.ros
export ROS_LOG_DIR ?= $(CURDIR)/.ros/log
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/openhelix demo

lint: setup
	$(VENV)/bin/ruff check .

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/openhelix bench

clean:
	rm -rf build install log .ros .pytest_cache .ruff_cache
