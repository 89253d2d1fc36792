"""The suite's own patience (tests/waits.py): slow work is waited for, a hang still fails."""

from __future__ import annotations

import sys
import time

import pytest

from tests.waits import Budget, run_watched, slowness, wait_for

BUSY_SILENT = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2.5: pass"
CHATTY = "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.5)"


def test_a_silent_idle_process_is_a_hang_and_the_message_says_what_was_waited_for():
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="a sleeper: no output and no CPU for 1 s"):
        run_watched([sys.executable, "-c", "import time; time.sleep(60)"], 1, "a sleeper")
    assert time.monotonic() - t0 < 30  # killed long before it would have ended


@pytest.mark.parametrize("code", [BUSY_SILENT, CHATTY], ids=["computing", "printing"])
def test_work_that_computes_or_prints_is_never_cut_off(code: str):
    done = run_watched([sys.executable, "-c", code], 1, "worker")  # longer than 1 s, alive
    assert done.returncode == 0
    assert code != CHATTY or done.stdout.split() == ["0", "1", "2", "3", "4"]


def test_waits_fail_with_what_they_waited_for_and_budgets_count_idle_seconds():
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_for(lambda: False, 0.3, "the impossible")
    assert wait_for(lambda: 7, 0.3, "a value") == 7
    budget = Budget(10)
    time.sleep(0.2)
    assert 9.7 <= budget.left() < 10  # at most the wall time is spent, less on a busy box
    assert 1.0 <= slowness() <= 8.0
