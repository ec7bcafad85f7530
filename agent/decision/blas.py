"""The decision's matrix products on one BLAS thread.

They are small (thousands x hundreds); OpenBLAS splits them across its threads anyway, and on a
busy machine (the CPU shared with the image model, other processes) waiting for those threads
costs more than the product: the decision took 2.5x longer with two threads than with one on a
loaded 2-core machine (``evals/bench_decision.py``). ``one_blas_thread`` limits numpy's BLAS to one
thread while any decision computation runs and restores the previous setting when the last one
ends (counted, so concurrent runs in one process do not restore each other's limit).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_depth = 0
_limiter: Any = None
_controller: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    global _depth, _limiter, _controller
    with _lock:
        if _depth == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()  # finds the BLAS libraries once (~1 ms); limit() is ~10 us
            _limiter = _controller.limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None


def single_blas_thread(fn: F) -> F:
    """Decorator: run ``fn`` under ``one_blas_thread``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
