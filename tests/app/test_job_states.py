"""The job state machine: walk its whole table."""
from types import SimpleNamespace

import pytest

from app.jobs import states as js

LEGAL = {
    (js.VALIDATING_FILES, js.QUEUED), (js.VALIDATING_FILES, js.FAILED), (js.VALIDATING_FILES, js.CANCELLED),
    (js.QUEUED, js.RUNNING), (js.QUEUED, js.FAILED), (js.QUEUED, js.CANCELLED),
    (js.RUNNING, js.SUCCEEDED), (js.RUNNING, js.FAILED), (js.RUNNING, js.CANCELLED), (js.RUNNING, js.QUEUED),
}


def job(status):
    return SimpleNamespace(status=status, started_at=None, finished_at=None, estimated_finish=123.0)


@pytest.mark.parametrize("current", js.STATES)
@pytest.mark.parametrize("new", js.STATES)
def test_every_pair_is_legal_or_refused(current, new):
    j = job(current)
    if (current, new) in LEGAL:
        js.transition(j, new, now=10.0)
        assert j.status == new
    else:
        with pytest.raises(js.IllegalTransition):
            js.transition(j, new)
        assert j.status == current


def test_terminal_states_are_final():
    assert js.TERMINAL == {js.SUCCEEDED, js.FAILED, js.CANCELLED}
    for state in js.TERMINAL:
        assert js.TRANSITIONS[state] == frozenset()


def test_times_are_stamped():
    j = job(js.QUEUED)
    js.transition(j, js.RUNNING, now=5.0)
    assert j.started_at == 5.0
    js.transition(j, js.SUCCEEDED, now=9.0)
    assert j.finished_at == 9.0 and j.estimated_finish is None
