"""`--device` resolution: auto picks what exists; a device the machine lacks is one clear error."""

from __future__ import annotations

import pytest
import torch

from distillkit.devices import resolve_device
from distillkit.errors import UserError


def test_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(UserError, match="has none"):
        resolve_device("cuda")


def test_missing_gpu_index_and_nonsense_are_refused():
    with pytest.raises(UserError, match="cuda:7|has none"):
        resolve_device("cuda:7" if torch.cuda.device_count() < 8 else "cuda:99")
    with pytest.raises(UserError, match="not a device"):
        resolve_device("gpu-please")
