"""The training thread chooser (pure logic, property-tested): it warms every candidate up, probes
them now and then, runs the other steps with the fastest, and keeps the probes' extra time small."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.cpu_isa import physical_cores
from ptqcore.models.train_threads import ThreadChooser, training_thread_counts

counts = st.integers(min_value=1, max_value=64)
step_seconds = st.floats(min_value=1e-3, max_value=10.0, allow_nan=False)


def run(chooser, timings):
    """Drive ``chooser`` for len(timings) steps; ``timings[i]`` maps a thread count to step i's seconds."""
    used = []
    for timing in timings:
        threads = chooser.next_threads()
        assert chooser.next_threads() == threads  # asking twice plans nothing new
        used.append(threads)
        chooser.record(timing(threads))
    return used


@given(st.lists(counts, min_size=1, max_size=4), st.lists(step_seconds, min_size=1, max_size=150))
def test_every_step_runs_with_a_candidate_and_is_counted(candidates, seconds):
    chooser = ThreadChooser(candidates)
    used = run(chooser, [lambda threads, s=s: s * (1 + threads % 3) for s in seconds])
    assert set(used) <= set(candidates)
    assert all(chooser.steps_with[count] == used.count(count) for count in chooser.candidates)
    assert sum(chooser.steps_with.values()) == len(seconds)


@given(st.lists(counts, min_size=2, max_size=4, unique=True), st.data())
def test_the_fastest_candidate_runs_the_steps_between_probes(candidates, data):
    cost = {count: data.draw(step_seconds) for count in candidates}
    fastest = min(candidates, key=lambda count: (cost[count], -count))
    chooser = ThreadChooser(candidates)
    used = run(chooser, [cost.get] * 600)
    ordered = sorted(candidates, reverse=True)
    assert used[: 2 * len(candidates)] == ordered + ordered  # warm-ups, then the first probe round
    assert chooser.chosen == fastest
    assert used.count(fastest) >= len(used) - len(candidates) * (2 + len(used) // chooser.min_every)


@given(st.lists(counts, min_size=2, max_size=3, unique=True), st.data(), st.integers(min_value=50, max_value=1500))
def test_probing_costs_about_the_overhead_budget(candidates, data, steps):
    """Extra time over running every step with the fastest count: the first warm-ups and probes,
    then per probe round at most the budget, or the ratio over max_every where rounds cannot be rarer."""
    cost = {count: data.draw(st.floats(min_value=0.01, max_value=10.0)) for count in candidates}
    chooser = ThreadChooser(candidates)
    used = run(chooser, [cost.get] * steps)
    best = min(cost.values())
    extra = sum(cost[count] for count in used) - steps * best
    ratio_extra = sum(cost[count] / best - 1 for count in candidates)
    per_step = max(chooser.overhead, ratio_extra / chooser.max_every)
    first_rounds = 2 * sum(cost[count] - best for count in candidates)
    assert extra <= first_rounds + per_step * steps * best + sum(cost.values()) + 1e-9


def test_the_choice_follows_the_machine_getting_busy_and_idle_again():
    """Idle cores: 2 threads win. Other work takes a core: the first slow step starts a probe round
    and 1 thread wins. When the work leaves, the next scheduled round goes back to 2 threads."""
    chooser = ThreadChooser([2, 1], min_every=8, max_every=40)
    idle = {2: 1.0, 1: 1.5}.get
    busy = {2: 7.0, 1: 1.6}.get
    used = run(chooser, [idle] * 20 + [busy] * 100 + [idle] * 60)
    assert used[:14] == [2, 1, 2, 1] + [2] * 10  # warm-ups, the first round, then 2 threads
    assert used[20:23] == [2, 2, 1]  # the slow step, then its probe round
    assert used[23:120].count(2) <= 3  # 7x slower: 2 threads are probed at most every 40 steps
    assert used[150:].count(1) <= 3  # idle again: 1 thread only in probe rounds


def test_ties_go_to_the_larger_count():
    chooser = ThreadChooser([1, 4])
    run(chooser, [lambda threads: 1.0] * 5)
    assert chooser.chosen == 4


@given(counts, st.lists(step_seconds, min_size=1, max_size=50))
def test_a_single_candidate_is_never_probed_against_anything(count, seconds):
    chooser = ThreadChooser([count, count])
    assert run(chooser, [lambda threads, s=s: s for s in seconds]) == [count] * len(seconds)
    steps = len(seconds)
    assert chooser.summary() == f"{count} thread{'s' if count > 1 else ''} x {steps} step{'s' if steps > 1 else ''}"


def test_training_chooses_between_the_physical_cores_and_one_unless_told():
    assert training_thread_counts(3) == (3,)
    assert training_thread_counts(0) == tuple(sorted({physical_cores(), 1}, reverse=True))
    with pytest.raises(ValueError):
        training_thread_counts(-1)


@pytest.mark.parametrize("candidates, settings", [
    ([], {}), ([0, 2], {}), ([2, -1], {}), ([2, 1], {"overhead": 0}), ([2, 1], {"min_every": 0}),
    ([2, 1], {"min_every": 9, "max_every": 8}), ([2, 1], {"slower": 1.0}),
])
def test_bad_settings_are_refused(candidates, settings):
    with pytest.raises(ValueError):
        ThreadChooser(candidates, **settings)
