"""--device: resolution, the one-line error for CUDA on a CPU-only machine, the run hash, and
jobs that put their tensors on the configured device."""

import pytest
import torch

from saliencylab import cli, data
from saliencylab.core import device
from saliencylab.core.errors import UserError
from saliencylab.protocols import roar
from saliencylab.protocols.roar import protocol as roar_protocol
from saliencylab.runs import config as cfg
from saliencylab.runs.runner import run_protocol_job

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_cpu_without_cuda_and_the_first_gpu_with_it(no_cuda):
    assert device.resolve_device("auto") == torch.device("cpu")
    assert device.resolve_device("cpu") == torch.device("cpu")
    assert device.device_kind("auto") == "cpu"


def test_auto_and_cuda_indices_with_two_gpus(two_gpus):
    assert device.resolve_device("auto") == torch.device("cuda:0")
    assert device.resolve_device("cuda") == torch.device("cuda:0")
    assert device.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UserError, match="this machine has 2 CUDA device"):
        device.resolve_device("cuda:2")
    assert device.device_kind("auto") == "cuda" == device.device_kind("cuda:1")


def test_cuda_on_a_cpu_only_machine_is_a_one_line_error_before_any_work(no_cuda, capsys, tmp_path):
    with pytest.raises(UserError, match="no CUDA device is available here"):
        device.resolve_device("cuda")
    for command in (["roar", "--preset", "roar-quick"], ["sgt", "--preset", "smoot-quick"],
                    ["prune", "--preset", "prune-quick"],
                    ["train", "--dataset", "digits", "--epochs", "1"]):
        assert cli.main(command + ["--device", "cuda", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--device cuda: no CUDA device is available" in err
    assert not list(tmp_path.iterdir())  # no run directory


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu:0", "cuda:", "cuda:-1", "auto:0", ""])
def test_unknown_devices_list_the_choices(name):
    with pytest.raises(UserError, match="choose auto, cpu, cuda or cuda:N"):
        device.resolve_device(name)
    with pytest.raises(UserError, match="choose auto, cpu, cuda or cuda:N"):
        device.device_kind(name)  # the run hash never records a name that cannot run


def test_names_ignore_case_and_spaces_and_the_kind_needs_no_gpu(two_gpus, monkeypatch):
    assert device.resolve_device(" CUDA:1 ") == torch.device("cuda:1")
    assert device.resolve_device("Cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert device.device_kind("cuda:7") == "cuda"  # a CUDA run's name, read on a CPU machine


def test_generator_is_seeded_on_its_device():
    a, b = device.generator("cpu", 5), device.generator(torch.device("cpu"), 5)
    assert a.device == torch.device("cpu")
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    assert not torch.equal(torch.rand(4, generator=device.generator("cpu", 6)),
                           torch.rand(4, generator=device.generator("cpu", 5)))


def test_set_deterministic_sets_and_clears_the_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        device.set_deterministic(True, torch.device("cuda"))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert device.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        device.set_deterministic(False, torch.device("cuda"))
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    finally:
        device.set_deterministic(False, torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark  # the autotuner is for CUDA runs only


@needs_cuda
def test_generator_and_move_to_on_cuda():
    g = device.generator("cuda", 3)
    assert torch.rand(2, generator=g, device="cuda").is_cuda
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    device.move_to("cuda", model, optimizer)
    assert next(model.parameters()).is_cuda
    state = next(iter(optimizer.state.values()))
    assert state["exp_avg"].is_cuda and not state["step"].is_cuda  # Adam keeps its step on the CPU


def test_the_device_flag_is_listed_by_every_command(capsys):
    for command in ("roar", "sgt", "prune", "train"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert "--device" in out and "--executor" in out


def recording_train(devices):
    real = roar_protocol.train

    def train(model, x, y, spec, *args, **kwargs):
        devices.append((next(model.parameters()).device.type, x.device.type, y.device.type))
        return real(model, x, y, spec, *args, **kwargs)

    return train


def roar_job_devices(monkeypatch, device: str) -> list:
    config = cfg.apply_sets(roar.RoarConfig(), ["dataset=digits", "n_train=64", "n_test=32",
                                                "train.epochs=1", f"device={device}"])
    ds = data.load_dataset("digits").subset(64, 32)
    ranking = {"train": torch.zeros(64, 64, dtype=torch.int16),
               "test": torch.zeros(32, 64, dtype=torch.int16)}
    devices = []
    monkeypatch.setattr(roar_protocol, "train", recording_train(devices))
    output = run_protocol_job(roar.ROAR, config, "random", 50.0, 0, progress=False, dataset=ds,
                              ranking=ranking)
    assert 0 <= output.record["accuracy"] <= 1 and output.ran_on.startswith(device)
    return devices


def test_a_roar_job_puts_its_model_and_data_on_the_configured_device(monkeypatch):
    assert roar_job_devices(monkeypatch, "cpu") == [("cpu", "cpu", "cpu")]


@needs_cuda
def test_a_roar_job_on_cuda_trains_there(monkeypatch):
    assert roar_job_devices(monkeypatch, "cuda") == [("cuda", "cuda", "cuda")]


@needs_cuda
def test_a_dataset_moved_to_cuda_stays_uint8():
    ds = data.load_dataset("digits").to("cuda")
    assert ds.x_train.is_cuda and ds.x_train.dtype == torch.uint8
    assert ds.spec.normalize(ds.x_test[:4]).is_cuda


@needs_cuda
def test_deterministic_cuda_runs_repeat_bit_for_bit():
    from saliencylab.models.registry import build_model
    from saliencylab.training.config import TrainConfig
    from saliencylab.training.loop import train

    ds = data.load_dataset("digits").subset(256, 32).to("cuda")
    device.set_deterministic(True, torch.device("cuda"))
    try:
        states = []
        for _ in range(2):
            torch.manual_seed(0)
            model = build_model("sgt_cnn", ds.spec.shape, 10).cuda()
            train(model, ds.x_train, ds.y_train, ds.spec, TrainConfig(epochs=1, batch_size=32,
                  optimizer="adadelta", lr=1.0), seed=0, progress=False)
            states.append(model.state_dict())
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    finally:
        device.set_deterministic(False, torch.device("cuda"))
