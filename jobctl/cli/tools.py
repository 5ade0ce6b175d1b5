"""Everyday tools around a job: export, tensorboard and version."""

from __future__ import annotations
