"""How the tests wait for another process, a thread or a server: on the event itself (the process
exits, a file appears, a port answers, a page shows the text), never on a deadline sized to the
expected time, which a loaded machine breaks (the whole suite once took 31 minutes and a training
subprocess ran past its 300 s limit). ``GUARD_S`` is only a last resort against a hang: a test that
waits that long has failed anyway, and says what it was waiting for."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

# the last-resort guard, not the expected time; GEOAGENT_TEST_GUARD_S overrides it (a debugging session)
GUARD_S = float(os.environ.get("GEOAGENT_TEST_GUARD_S", "1800"))


def wait_for(condition: Callable[[], object], what: str, *, proc: subprocess.Popen | None = None, poll_s: float = 0.05):
    """Return ``condition()``'s first truthy value. Fails at once if ``proc`` exits first (with its output
    where it was piped), and only after ``GUARD_S`` otherwise."""
    guard = time.monotonic() + GUARD_S
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}: {out!r} {err!r}"[-4000:])
        if time.monotonic() > guard:
            raise AssertionError(f"still waiting for {what} after {GUARD_S:.0f} s (the last-resort guard)")
        time.sleep(poll_s)
