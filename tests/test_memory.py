"""peak_memory_mb: the MAML chapter's memory column, measured without writing to stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fewshot_tutorial.benchmarking import peak_memory_mb
from tests.conftest import REPO

MB = 2**20


def test_peak_is_the_largest_sum_of_live_tensors():
    def fn():
        a = torch.zeros(MB // 4)  # 1 MB
        b = torch.zeros(MB // 2)  # 2 MB, with a: 3 MB
        del a
        c = torch.zeros(MB // 4)  # 1 MB, with b: 3 MB
        return b, c

    assert peak_memory_mb(fn) == pytest.approx(3.0)


def test_in_place_ops_and_views_of_existing_tensors_add_nothing():
    x = torch.zeros(MB)

    def fn():
        x.add_(1)
        x.view(-1, 2).t()

    assert peak_memory_mb(fn) == 0.0


def test_backward_and_vmap_are_counted():
    w = torch.randn(256, 256, requires_grad=True)

    def fn():
        torch.func.vmap(lambda v: (w @ v).tanh())(torch.randn(64, 256)).sum().backward()

    assert peak_memory_mb(fn) > 256 * 256 * 4 / MB  # at least the gradient of w


def test_writes_nothing_to_stderr():
    # the profiler it replaced printed profiler_start, "gpuGetDeviceCount failed" (CUDA
    # build, no GPU) and a CPUAllocator warning when a tensor made before it was freed
    code = """
import torch
from fewshot_tutorial.benchmarking import peak_memory_mb
w = torch.randn(64, 64, requires_grad=True)
(w * 2).sum().backward()
def step():
    w.grad = None
    (w @ w).sum().backward()
print(round(peak_memory_mb(step), 3))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stderr == ""
    assert float(out.stdout) > 0
