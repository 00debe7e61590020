"""Downstream tasks on top of trained networks: evaluation and metrics, landmarks, discovery,
benchmark orchestration. Modules are imported directly (``localdisc.tasks.evaluate`` ...)."""
