"""course_utils.device: cuda, else mps, else cpu; COURSE_DEVICE overrides; a report for notebooks."""

from types import SimpleNamespace

import pytest
import torch

from course_utils import device as dev


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given number of GPUs and MPS or not."""
    monkeypatch.delenv("COURSE_DEVICE", raising=False)

    def configure(gpus=0, mps=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(
            torch.cuda,
            "get_device_properties",
            lambda i: SimpleNamespace(name=f"Fake GPU {i}", total_memory=80 * 2**30),
        )
        monkeypatch.setattr(dev, "_mps_available", lambda: mps)

    return configure


def test_prefers_cuda_then_mps_then_cpu(machine):
    machine(gpus=1, mps=True)
    assert dev.get_device() == torch.device("cuda")
    machine(gpus=0, mps=True)
    assert dev.get_device() == torch.device("mps")
    machine(gpus=0, mps=False)
    assert dev.get_device() == torch.device("cpu")


@pytest.mark.parametrize(
    "choice, expected", [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), ("mps", "mps"), (" CUDA ", "cuda")]
)
def test_env_var_chooses_an_available_device(machine, monkeypatch, choice, expected):
    machine(gpus=2, mps=True)
    monkeypatch.setenv("COURSE_DEVICE", choice)
    assert dev.get_device() == torch.device(expected)


def test_env_var_cpu_wins_over_a_gpu(machine, monkeypatch):
    machine(gpus=1)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert dev.get_device() == torch.device("cpu")


@pytest.mark.parametrize("choice", ["cuda", "cuda:1", "mps", "tpu", "gpu"])
def test_unavailable_or_unknown_choice_raises_and_lists_what_is_available(machine, monkeypatch, choice):
    machine(gpus=1, mps=False)
    monkeypatch.setenv("COURSE_DEVICE", choice)
    if choice == "cuda":
        assert dev.get_device() == torch.device("cuda")
        return
    with pytest.raises(ValueError) as err:
        dev.get_device()
    message = str(err.value)
    assert repr(choice) in message and "Available: cpu, cuda, cuda:0" in message and "unset" in message


def test_empty_env_var_means_automatic(machine, monkeypatch):
    machine(gpus=0)
    monkeypatch.setenv("COURSE_DEVICE", "")
    assert dev.get_device() == torch.device("cpu")


def test_available_devices_lists_every_gpu(machine):
    machine(gpus=2, mps=True)
    assert dev.available_devices() == ["cpu", "cuda", "cuda:0", "cuda:1", "mps"]


def test_report_on_cpu(machine):
    machine(gpus=0)
    report = dev.device_report()
    assert f"torch {torch.__version__}" in report
    assert "device: cpu" in report
    assert f"CPU threads: {torch.get_num_threads()}" in report
    assert "GPU" not in report


def test_report_names_the_gpu_and_its_memory(machine):
    machine(gpus=1)
    assert "GPU: Fake GPU 0 (80.0 GiB)" in dev.device_report()


def test_report_on_mps(machine):
    machine(gpus=0, mps=True)
    assert "device: mps" in dev.device_report() and "Apple MPS" in dev.device_report()


def test_mps_probe_is_false_without_the_backend(monkeypatch):
    monkeypatch.setattr(torch.backends, "mps", None, raising=False)
    assert dev._mps_available() is False
