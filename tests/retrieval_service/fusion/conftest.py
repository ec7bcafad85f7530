"""The fusion tests train tiny models: one torch thread is several times faster than two on a
shared 2-core machine (measured 6.6 s vs 38.7 s for the same run under load), and gives the
same numbers on every machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
