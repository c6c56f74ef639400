"""The shared training engine (normalcy.core.training) on tiny torch problems."""

from __future__ import annotations

import time

import pytest
import torch

from normalcy.core import progress
from normalcy.core.errors import DataError
from normalcy.core.training import seeded, train


def regression(seed: int = 0, lr: float = 0.05):
    """A linear model fitted to y = X w by SGD on random mini-batches: (module, step)."""
    with seeded(seed):
        net = torch.nn.Linear(4, 1)
    data_gen = torch.Generator().manual_seed(123)
    X = torch.randn(256, 4, generator=data_gen)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    opt = torch.optim.SGD(net.parameters(), lr=lr)

    def step(i):
        rows = torch.randint(0, len(X), (16,))  # the global generator, seeded by train
        loss = (net(X[rows]) - y[rows]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return net, step, lambda: -(net(X) - y).pow(2).mean().item()


def weights(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_training_reduces_the_loss_and_keeps_the_best_state():
    net, step, validate = regression()
    first = validate()
    result = train(net, step, max_steps=200, validate=validate, validate_every=20)
    assert result.steps == 200 and result.stopped == "steps"
    assert result.best == pytest.approx(validate()) and result.best > first
    assert result.best > -1e-3  # the exact solution has loss 0
    assert [h[0] for h in result.history] == list(range(20, 201, 20))
    torch.testing.assert_close(result.state["weight"], net.weight)


def test_same_seed_same_weights_and_another_seed_differs():
    runs = []
    for seed in (7, 7, 8):
        net, step, validate = regression(seed)
        train(net, step, max_steps=30, validate=validate, validate_every=10, seed=seed)
        runs.append(weights(net))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_the_callers_random_state_is_left_as_it_was():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    net, step, validate = regression()
    train(net, step, max_steps=5, validate_every=5, seed=99)
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_best_validated_state_is_kept_not_the_last():
    net = torch.nn.Linear(1, 1, bias=False)
    figures = iter([0.5, 0.9, 0.7, 0.6])
    snapshots = []

    def step(i):
        with torch.no_grad():
            net.weight.fill_(float(i + 1))  # the weight says which step ran last
        return 1.0

    def validate():
        snapshots.append(net.weight.item())
        return next(figures)

    result = train(net, step, max_steps=40, validate=validate, validate_every=10)
    assert snapshots == [10.0, 20.0, 30.0, 40.0]
    assert result.best == 0.9 and result.best_step == 20
    assert net.weight.item() == 20.0 and result.state["weight"].item() == 20.0


def test_patience_stops_after_that_many_validations_without_improvement():
    net = torch.nn.Linear(1, 1)
    figures = iter([0.1, 0.5, 0.4, 0.5, 0.3, 0.9])
    result = train(net, lambda i: 1.0, max_steps=100, validate=lambda: next(figures), validate_every=5,
                   patience=3)
    # 0.5 at step 10, then 0.4, 0.5 (not better), 0.3: three without improvement.
    assert result.stopped == "patience" and result.steps == 25 and result.best_step == 10


def test_time_budget_stops_at_a_step_boundary_and_validates_there():
    net = torch.nn.Linear(1, 1)
    steps_done = []

    def step(i):
        time.sleep(0.02)
        steps_done.append(i)
        return 1.0

    start = time.monotonic()
    result = train(net, step, max_steps=10_000, validate=lambda: float(len(steps_done)), validate_every=1000,
                   max_seconds=0.2)
    assert result.stopped == "time"
    assert 0.2 <= time.monotonic() - start < 1.5
    # The budget's last step was validated, though it is no multiple of validate_every.
    assert result.best_step == result.steps == len(steps_done) < 1000


def test_ctrl_c_after_a_checkpoint_returns_the_kept_state():
    net = torch.nn.Linear(2, 1)

    def step(i):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
            if i == 14:  # half-way through an update, as a real Ctrl-C may land
                net.weight.fill_(float("nan"))
                raise KeyboardInterrupt
        return 1.0

    kept = {}

    def validate():
        kept["weight"] = net.weight.detach().clone()
        return 1.0

    result = train(net, step, max_steps=100, validate=validate, validate_every=10)
    assert result.stopped == "interrupted" and result.best_step == 10
    torch.testing.assert_close(net.weight, kept["weight"])  # the step-10 state, not the broken one


def test_ctrl_c_before_any_checkpoint_gives_nothing():
    net = torch.nn.Linear(2, 1)

    def step(i):
        if i == 3:
            raise KeyboardInterrupt
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        train(net, step, max_steps=100, validate=lambda: 1.0, validate_every=10)


def test_a_crash_in_a_step_propagates():
    net = torch.nn.Linear(2, 1)

    def step(i):
        if i == 12:
            raise RuntimeError("out of memory")
        return 1.0

    with pytest.raises(RuntimeError, match="out of memory"):
        train(net, step, max_steps=100, validate=lambda: 1.0, validate_every=5)


def test_a_diverging_loss_stops_and_keeps_the_last_good_checkpoint():
    net = torch.nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(3.0)

    def step(i):
        if i == 7:
            with torch.no_grad():
                net.weight.fill_(float("inf"))
            return float("nan")
        return 0.5

    result = train(net, step, max_steps=100, validate=lambda: 1.0, validate_every=5)
    assert result.stopped == "diverged" and result.best_step == 5
    assert net.weight.item() == 3.0
    with pytest.raises(DataError, match="diverged at step 1"):
        train(net, lambda i: float("nan"), max_steps=100, validate=lambda: 1.0, validate_every=5)


def test_without_validation_the_last_checkpoint_is_kept():
    net = torch.nn.Linear(1, 1, bias=False)

    def step(i):
        with torch.no_grad():
            net.weight.fill_(float(i + 1))
        return 1.0

    result = train(net, step, max_steps=23, validate_every=10)
    assert result.best is None and result.best_step == 23 and net.weight.item() == 23.0


def test_threads_are_set_for_the_run_and_restored():
    before = torch.get_num_threads()
    seen = []
    net = torch.nn.Linear(1, 1)
    train(net, lambda i: seen.append(torch.get_num_threads()) or 1.0, max_steps=2, threads=1)
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_modules_train_in_train_mode_and_validate_in_eval_mode():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    modes = []
    train(net, lambda i: modes.append(("step", net.training)) or 1.0, max_steps=2,
          validate=lambda: modes.append(("validate", net.training)) or 1.0, validate_every=1)
    assert modes == [("step", True), ("validate", False), ("step", True), ("validate", False)]
    assert not net.training


def test_log_lines_carry_loss_validation_and_time_left(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    monkeypatch.setattr(progress, "_enabled", None)  # stderr is no terminal under pytest
    net, step, validate = regression()
    train(net, step, max_steps=4, validate=validate, validate_every=2, desc="fitting")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("fitting: step 1/4, ") and "loss " in lines[0] and "s left" in lines[0]
    assert any("validation " in line and "best " in line for line in lines)
    assert lines[-1].startswith("fitting: stopped (steps) after 4 steps; kept step ")


def test_progress_off_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(progress, "_enabled", False)
    net, step, validate = regression()
    train(net, step, max_steps=3, validate=validate, validate_every=1)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kwargs, words", [
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 5, "validate_every": 0}, "validate_every"),
    ({"max_steps": 5, "patience": 0}, "patience"),
    ({"max_steps": 5, "max_seconds": 0}, "max_seconds"),
])
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(DataError, match=words):
        train(torch.nn.Linear(1, 1), lambda i: 1.0, **kwargs)


@pytest.fixture
def limits_applied(monkeypatch):
    """The limits threadpoolctl is asked to apply, from a state where none is held (a server
    test in this worker may have set one for the whole process)."""
    import threadpoolctl

    from normalcy.core import threads

    monkeypatch.setattr(threads, "_held", [])
    calls = []
    real = threadpoolctl.threadpool_limits
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", lambda n: calls.append(n) or real(n))
    return calls


def test_a_block_inside_one_with_the_same_limit_costs_nothing(limits_applied):
    from normalcy.core.threads import thread_limit

    calls = limits_applied
    before = torch.get_num_threads()
    with thread_limit(1):
        for _ in range(3):
            with thread_limit(1):
                assert torch.get_num_threads() == 1
        with thread_limit(2):  # a different limit is applied, then the outer one comes back
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert calls == [1, 2] and torch.get_num_threads() == before


def test_a_limit_held_for_the_process_is_applied_once_and_stays(limits_applied):
    from normalcy.core import threads

    calls = limits_applied
    before = torch.get_num_threads()
    held = threads.hold(1)
    try:
        for _ in range(3):  # a Spark worker's next keys: nothing more to apply
            assert threads.hold(1) is None
            with threads.thread_limit(1):
                assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1 and calls == [1]
        assert threads.hold(None) is None
    finally:
        held.__exit__(None, None, None)
    assert torch.get_num_threads() == before
