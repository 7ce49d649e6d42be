"""Training tests run tiny models, for which torch's intra-op threads only add overhead
(and, with pytest-xdist's workers sharing two cores, a lot of it): one thread each."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
