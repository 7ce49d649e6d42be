"""Device and dtype selection (adapters/devices.py)."""

import pytest
import torch

from adapters.devices import resolve_device, resolve_dtype
from adapters.errors import DeviceUnavailableError
from store.errors import UsageError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_in_one_line():
    with pytest.raises(DeviceUnavailableError) as info:
        resolve_device("cuda:1")
    assert str(info.value).startswith("device 'cuda:1' is not available: ")
    assert info.value.exit_code == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_beyond_the_visible_devices_is_refused():
    with pytest.raises(DeviceUnavailableError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_unknown_device_names_the_choices():
    with pytest.raises(UsageError, match="unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")


def test_dtype():
    assert resolve_dtype("auto") is None and resolve_dtype(None) is None
    assert resolve_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(UsageError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")
