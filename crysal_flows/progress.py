"""Progress of long work as periodic log lines: how far, how fast, how long still.

One line when the work starts, then at most one every ``every`` seconds (10 on a terminal, 60 in
a log file, where a job's output of hours should stay readable), and one when it ends. Lines go
to this package's logger, so ``crysal run`` shows them and FireWorks' job logs keep them.
"""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["Progress", "quiet_libraries", "setup_logging"]

logger = logging.getLogger("crysal_flows")


class Progress:
    """Report ``done`` of ``total`` items of some work, with a rate and an estimate of time left.

    Parameters
    ----------
    what
        What the work is, e.g. "cycle 2: member 1/3 training".
    total
        How many items (epochs, candidates, labels) the work has.
    unit
        The items' name in the rate, e.g. "epochs".
    every
        Seconds between lines (default: 10 on a terminal, 60 otherwise).
    """

    def __init__(self, what: str, total: int, unit: str, every: float | None = None) -> None:
        self.what, self.total, self.unit = what, max(int(total), 0), unit
        self.every = every if every is not None else (10.0 if sys.stdout.isatty() else 60.0)
        self.t0 = time.perf_counter()
        self._last = self.t0
        self._done = 0

    def update(self, done: int) -> None:
        """Record that ``done`` items are finished; log a line if it is time to."""
        self._done = done
        now = time.perf_counter()
        if done >= self.total or now - self._last >= self.every:
            self._last = now
            logger.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        """Return the progress line as of ``now``."""
        elapsed = (now or time.perf_counter()) - self.t0
        rate = self._done / elapsed if elapsed > 0 else 0.0
        if self._done >= self.total:
            return (
                f"{self.what}: {self._done}/{self.total} {self.unit} in {elapsed:.0f} s "
                f"({rate:.2g} {self.unit}/s)"
            )
        left = (self.total - self._done) / rate if rate > 0 else float("nan")
        return (
            f"{self.what}: {self._done}/{self.total} {self.unit} after {elapsed:.0f} s "
            f"({rate:.2g} {self.unit}/s, about {left:.0f} s left)"
        )


def quiet_libraries() -> None:
    """Keep third-party warnings that say nothing to a user out of the output."""
    import warnings

    warnings.filterwarnings("ignore", message=".*TorchScript.*")
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="pyxtal")
    warnings.filterwarnings("ignore", module="spglib")
    # CHGNet (a prior or oracle) converts a tensor that requires grad on every call
    warnings.filterwarnings("ignore", message=".*Converting a tensor with requires_grad=True.*")


def setup_logging(verbose: bool) -> None:
    """Send this package's lines to stdout with the time; jobflow's own only with ``verbose``."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger("crysal_flows")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    logging.getLogger("jobflow").setLevel(logging.INFO if verbose else logging.ERROR)
