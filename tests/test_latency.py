import time

import pytest
import torch
from torch import nn

from harness.api.protocol import Method, MethodCard, Prediction
from harness.cli.main import main
from harness.results.store import ResultStore
from harness.run.latency import LatencyConfig, measure, peak_memory

CPU = torch.device("cpu")


class TinyCNN(Method):
    card = MethodCard("tiny-cnn", "test", "a small convolutional scorer", "-", "-")

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()

    def fit(self, train: object, val: object, ctx: object) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=self.net(batch.expand(-1, 3, -1, -1)).mean(dim=(1, 2, 3)))

    def torch_modules(self) -> list[nn.Module]:
        return [self.net]


class Allocates(Method):
    card = MethodCard("allocates", "test", "allocates 256 MiB per call", "-", "-")

    def fit(self, train: object, val: object, ctx: object) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        block = torch.ones(64 * 2**20)  # 256 MiB, touched
        return Prediction(scores=batch.mean(dim=(1, 2, 3)) + block[0])


@pytest.fixture(scope="module")
def images():
    # Small enough that per-call overhead dominates a batch of one, as for real models on small inputs.
    return torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def one_thread():
    """One intra-op thread: with two threads on a busy two-core machine, thread wake-ups, not
    the model, dominate the timings of a tiny network."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_latency_invariants_on_a_tiny_cnn(images, one_thread):
    method = TinyCNN()
    one = measure(method, images, CPU, LatencyConfig(batch_size=1, warmup=5, iterations=60))
    many = measure(method, images, CPU, LatencyConfig(batch_size=32, warmup=2, iterations=20))
    for r in (one, many):
        assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
        assert r.timer == "perf_counter" and r.threads == 1 and r.resolution == 16
        assert r.param_count == sum(p.numel() for p in method.net.parameters())
    assert many.throughput_ips > one.throughput_ips
    # FLOPs of the two convolutions, counted by torch's flop counter: 2 * Cout * Cin * 9 * H * W each.
    assert one.flops_per_image == pytest.approx(2 * 16 * 16 * 9 * (4 * 3 + 4 * 4))


def test_cpu_peak_memory_sees_an_allocation(images):
    result = measure(Allocates(), images, CPU, LatencyConfig(batch_size=1, warmup=1, iterations=2))
    assert result.peak_memory_bytes > 200 * 2**20 and result.memory_kind == "cpu_peak_rss_increase"
    with peak_memory(CPU) as memory:
        pass
    assert memory["bytes"] < 200 * 2**20


def test_autocast_precision_runs_on_cpu(images):
    result = measure(
        TinyCNN(),
        images,
        CPU,
        LatencyConfig(batch_size=2, precision="bf16", channels_last=True, warmup=1, iterations=3),
    )
    assert result.precision == "bf16" and result.channels_last and result.p50_ms > 0


@pytest.mark.parametrize("method", ["patchcore", "knn", "intensity", "random"])
def test_latency_command_for_every_shipped_method(method, tiny_board, tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    args = [
        "latency",
        "--method",
        method,
        "--board",
        str(tiny_board),
        "--batch-sizes",
        "1,4",
        "--warmup",
        "1",
        "--iterations",
        "3",
        "--db",
        str(db),
        "--device",
        "cpu",
    ]
    if method == "patchcore":
        args += ["--param", "coreset_ratio=0.1", "--precision", "bf16", "--channels-last"]
    assert main(args) == 0
    assert "stored in the latency table" in capsys.readouterr().out
    with ResultStore(db) as store:
        rows = store.query("SELECT * FROM latency ORDER BY batch_size")
    assert rows["batch_size"].tolist() == [1, 4] and rows["run_id"].isna().all()
    assert set(rows["precision"]) == {"bf16" if method == "patchcore" else "fp32"}
    assert (rows["p50_ms"] > 0).all() and (rows["p50_ms"] <= rows["p99_ms"]).all()
    if method in ("patchcore", "knn"):
        assert (
            (rows["bank_bytes"] > 0).all() and (rows["param_count"] > 0).all() and (rows["flops_per_image"] > 0).all()
        )


class Sleeps(Method):
    """predict sleeps a known time; the first call after compile() sleeps longer (compilation)."""

    card = MethodCard("sleeps", "test", "-", "-", "-")

    def __init__(self):
        super().__init__()
        self.calls, self.compiled, self.module = 0, False, nn.Identity()
        self.module.compile = self.compile

    def compile(self) -> None:
        self.compiled = True

    def fit(self, train: object, val: object, ctx: object) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        self.calls += 1
        time.sleep(0.3 if self.compiled and self.calls == 1 else 0.02)
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))

    def torch_modules(self) -> list[nn.Module]:
        return [self.module]


def test_latency_of_a_method_that_sleeps_a_known_time(images):
    method = Sleeps()
    result = measure(method, images, CPU, LatencyConfig(batch_size=4, warmup=2, iterations=10))
    assert method.calls == 2 + 10 + 1  # warm-up, timed calls, and one call counting FLOPs
    assert 20.0 <= result.p50_ms < 30.0 and result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.throughput_ips == pytest.approx(4 / (result.mean_ms / 1000), rel=1e-12)
    assert result.compile_seconds is None


def test_compile_time_is_measured_apart_from_the_timed_calls(images):
    method = Sleeps()
    result = measure(method, images, CPU, LatencyConfig(batch_size=1, warmup=1, iterations=5, compile=True))
    assert result.compile_seconds >= 0.3 and result.p99_ms < 100.0
