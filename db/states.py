"""A task's states, and which of them hold credits: the one place that says so.

The budget rules (what counts as spent, what as active) and the refund rules are derived
from these sets, so the two can never disagree about a state.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class TaskState(StrEnum):
    """Where a task is in its life."""

    SUBMITTING = "submitting"
    RENDERING = "rendering"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    UNCERTAIN = "uncertain"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        """Whether nothing more will happen to the task."""
        return self in _FINISHED

    @property
    def refunded(self) -> bool:
        """Whether entering this state gave the credits back."""
        return self in _REFUNDED


_REFUNDED = frozenset(
    {TaskState.FAILED, TaskState.REJECTED, TaskState.UNCERTAIN, TaskState.TIMED_OUT}
)
_FINISHED = _REFUNDED | {TaskState.DONE}

# Charged and not given back: what caps and the operator's ceiling count.
SPENDING = tuple(state for state in TaskState if not state.refunded)
# Submitted and not yet delivered or refunded: what a member's concurrency limit counts.
ACTIVE = tuple(state for state in TaskState if not state.finished)


def sql_list(states: Iterable[TaskState]) -> str:
    """Return states as an SQL list of literals, for `state IN (...)`."""
    return ", ".join(f"'{state.value}'" for state in states)
