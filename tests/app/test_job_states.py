"""The state tables of jobs and datasets: every pair of statuses is legal or refused, as listed here."""
from types import SimpleNamespace

import pytest

from app.jobs import states as js
from app.jobs.states import DatasetStatus as DS

LEGAL = {
    (js.VALIDATING_FILES, js.QUEUED), (js.VALIDATING_FILES, js.FAILED), (js.VALIDATING_FILES, js.CANCELLED),
    (js.QUEUED, js.RUNNING), (js.QUEUED, js.FAILED), (js.QUEUED, js.CANCELLED),
    (js.RUNNING, js.SUCCEEDED), (js.RUNNING, js.FAILED), (js.RUNNING, js.CANCELLED), (js.RUNNING, js.QUEUED),
}
LEGAL_DATASET = {(DS.VALIDATING, DS.READY), (DS.VALIDATING, DS.FAILED), (DS.READY, DS.DELETED), (DS.FAILED, DS.DELETED)}


@pytest.mark.parametrize("current", js.STATES)
@pytest.mark.parametrize("new", js.STATES)
def test_every_job_move_is_legal_or_refused(current, new):
    assert js.can_move(current, new) == ((current, new) in LEGAL)


@pytest.mark.parametrize("new", js.STATES)
def test_the_sources_of_a_move_are_the_tables(new):
    """What the lifecycle's atomic UPDATEs put in `WHERE status IN (...)`."""
    assert js.sources_of(new) == {current for current, target in LEGAL if target == new}


def test_terminal_states_are_final():
    assert js.TERMINAL == {js.SUCCEEDED, js.FAILED, js.CANCELLED}
    for state in js.TERMINAL:
        assert js.TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize("current", DS.ALL)
@pytest.mark.parametrize("new", DS.ALL)
def test_every_dataset_move_is_legal_or_refused(current, new):
    dataset = SimpleNamespace(status=current)
    if (current, new) in LEGAL_DATASET:
        js.move_dataset(dataset, new)
        assert dataset.status == new
    else:
        with pytest.raises(js.IllegalTransition):
            js.move_dataset(dataset, new)
        assert dataset.status == current
