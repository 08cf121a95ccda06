"""Exceptions that cross layers."""

from __future__ import annotations


class NotLeader(Exception):
    """An evaluation stopped before a write because this replica no longer holds the Lease."""
