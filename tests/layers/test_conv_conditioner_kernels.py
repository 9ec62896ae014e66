"""The native CPU kernels of Glow's conditioner against the Python pieces they replace (im2col rows,
col2im of tap planes, the ReLU mask with its column sums), and their loader: the switch, the
fallback with one warning, and a cache that a failed or killed build cannot leave broken."""
import warnings
from pathlib import Path

import pytest
import torch
import torch.utils.cpp_extension
from layers.test_conv_conditioner import native_kernels_or_skip

from invflow.layers import conv_conditioner_kernels as loader
from invflow.layers.conv_conditioner import _col2im, _rows


@pytest.fixture
def native():
    return native_kernels_or_skip()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channel_slice"])
@pytest.mark.parametrize("batch,channels,height,width",
                         [(3, 1, 5, 7), (2, 2, 14, 14), (4, 3, 1, 1), (1, 8, 2, 3)])
def test_rows_are_the_python_rows(native, dtype, layout, batch, channels, height, width):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels + 1, height, width, generator=gen, dtype=dtype)
    x = {"contiguous": x[:, 1:].contiguous(),
         "channels_last": x[:, 1:].contiguous(memory_format=torch.channels_last),
         "channel_slice": x[:, 1:]}[layout]
    torch.testing.assert_close(native.rows(x), _rows(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels,height,width,batch",
                         [(1, 5, 7, 3), (4, 14, 14, 2), (3, 1, 1, 4), (8, 2, 3, 1), (2, 1, 6, 5),
                          (2, 6, 1, 5)])
def test_col2im_is_the_python_col2im_plus_the_bias(native, dtype, channels, height, width, batch):
    gen = torch.Generator().manual_seed(2)
    planes = torch.randn(9 * channels, height * width * batch, generator=gen, dtype=dtype)
    bias = torch.randn(channels, generator=gen, dtype=dtype)
    want = _col2im(planes, batch, height, width)
    tol = {"rtol": 0, "atol": 1e-12 if dtype == torch.float64 else 1e-5}
    torch.testing.assert_close(native.col2im(planes, None, batch, height, width), want, **tol)
    with_bias = native.col2im(planes, bias, batch, height, width)
    torch.testing.assert_close(with_bias, want + bias.view(1, -1, 1, 1), **tol)


def test_col2im_refuses_planes_of_another_shape(native):
    with pytest.raises(RuntimeError, match="expected planes"):
        native.col2im(torch.zeros(9 * 2, 10), None, 2, 2, 3)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows,cols", [(1, 5), (64, 16), (1000, 33), (12544, 128)])
def test_relu_mask_and_sum_is_threshold_backward_and_a_column_sum(native, threads, rows, cols):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(3)
        g = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
        h = torch.randn(rows, cols, generator=gen, dtype=torch.float64).relu()  # a ReLU's output: zeros
        h.view(-1)[::7] = float("nan")  # relu(nan) is nan: its gradient passes, as in threshold_backward
        g.view(-1)[::11] = float("nan")
        masked = torch.ops.aten.threshold_backward(g, h, 0.0)
        sums = native.relu_mask_and_sum(g, h)  # g in place
        torch.testing.assert_close(g, masked, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(sums, masked.sum(0), rtol=0, atol=1e-10, equal_nan=True)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """The loader with nothing loaded, its cache in an empty directory; restored afterwards."""
    monkeypatch.setenv(loader.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(loader, "_loaded", None)
    monkeypatch.setattr(loader, "_failure", None)
    return tmp_path / "cache"


def test_the_switch_turns_the_kernels_off_without_building(fresh_loader, monkeypatch):
    monkeypatch.setenv(loader.ENV_SWITCH, "0")
    monkeypatch.setattr(loader, "_load", lambda: pytest.fail("built although switched off"))
    assert loader.kernels() is None and loader.failure() is None


def test_a_failed_build_warns_once_and_the_python_function_runs(fresh_loader, monkeypatch):
    from invflow.layers.conv_conditioner import ConvConditioner

    def broken():
        raise RuntimeError("Error building extension\nc++: not found")

    monkeypatch.setattr(loader, "_load", broken)
    with pytest.warns(RuntimeWarning, match=r"unavailable \(RuntimeError: c\+\+: not found\).*Python"):
        assert loader.kernels() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loader.kernels() is None  # no second warning, no second build
        torch.manual_seed(0)
        net = ConvConditioner(2, 4, 8)
        torch.nn.init.normal_(net[4].weight)
        x = torch.randn(2, 2, 5, 5, requires_grad=True)
        y = net(x)
        y.sum().backward()
        want = torch.nn.Sequential.forward(net, x)
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    assert "c++: not found" in loader.failure()


def test_a_compiler_error_is_named_by_its_error_line():
    log = ("Error building extension 'k': [1/2] c++ -O3 -c k.cpp\nFAILED: k.o\n"
           "k.cpp:3:1: error: 'foo' was not declared in this scope\nninja: build stopped: subcommand failed.")
    assert loader._first_error_line(log) == "k.cpp:3:1: error: 'foo' was not declared in this scope"
    assert loader._first_error_line("Ninja is required to load C++ extensions") == \
        "Ninja is required to load C++ extensions"
    assert loader._first_error_line("") == ""


def fake_load(writes: bool):
    """A stand-in for ``torch.utils.cpp_extension.load`` that writes a library file (or fails)."""
    def load(name, sources, build_directory, **kwargs):
        if not writes:
            raise RuntimeError("compiler error")
        (Path(build_directory) / f"{name}.so").write_bytes(b"built")
        return "module"
    return load


def test_a_build_lands_by_rename_and_leaves_no_scratch(fresh_loader, monkeypatch):
    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load(writes=True))
    target = fresh_loader / "lib.so"
    assert loader._build("lib", target) == "module"
    assert target.read_bytes() == b"built" and [p.name for p in fresh_loader.iterdir()] == ["lib.so"]


def test_a_failed_build_leaves_the_cache_as_it_was(fresh_loader, monkeypatch):
    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load(writes=False))
    target = fresh_loader / "lib.so"
    with pytest.raises(RuntimeError, match="compiler error"):
        loader._build("lib", target)
    assert list(fresh_loader.iterdir()) == []


def test_an_unloadable_library_in_the_cache_is_rebuilt(fresh_loader, monkeypatch):
    name = f"invflow_conditioner_kernels_{loader.build_key()}"
    fresh_loader.mkdir(parents=True)
    (fresh_loader / f"{name}.so").write_bytes(b"not a library")
    rebuilt = []
    monkeypatch.setattr(loader, "_build", lambda n, t: rebuilt.append((n, t)) or "module")
    assert loader._load() == "module"
    assert rebuilt == [(name, fresh_loader / f"{name}.so")]


def test_the_build_key_follows_the_source_and_torch(monkeypatch, tmp_path):
    key = loader.build_key()
    source = tmp_path / "k.cpp"
    source.write_bytes(loader.SOURCE.read_bytes() + b"\n// changed\n")
    monkeypatch.setattr(loader, "SOURCE", source)
    assert loader.build_key() != key
    monkeypatch.setattr(loader, "SOURCE", Path(loader.__file__).with_suffix(".cpp"))
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert loader.build_key() != key



def test_the_cache_is_invflows_unless_moved(monkeypatch, tmp_path):
    monkeypatch.delenv(loader.ENV_CACHE, raising=False)
    monkeypatch.setenv("INVFLOW_CACHE", str(tmp_path))
    assert loader.cache_dir() == tmp_path / "kernels"
    monkeypatch.setenv(loader.ENV_CACHE, str(tmp_path / "elsewhere"))
    assert loader.cache_dir() == tmp_path / "elsewhere"


def test_the_state_line_says_off_not_built_unavailable_or_where(fresh_loader, monkeypatch):
    assert loader.state().startswith("not built yet") and "--build-kernels" in loader.state()
    name, path = loader.library_path()
    assert path.parent == fresh_loader and name in path.name
    fresh_loader.mkdir(parents=True)
    path.write_bytes(b"library")
    assert loader.state() == f"built: {path}"
    monkeypatch.setattr(loader, "_failure", "RuntimeError: no compiler")
    assert loader.state().startswith("unavailable (RuntimeError: no compiler)")
    monkeypatch.setenv(loader.ENV_SWITCH, "0")
    assert loader.state() == "off (INVFLOW_NATIVE_KERNELS=0)"


@pytest.mark.parametrize("threads", [1, 2])
def test_the_bias_gradient_of_a_long_float32_column_keeps_its_digits(native, threads):
    """12,544 positive float32 numbers a column (Glow's level-1 rows at batch 64): the sum is within
    float32 rounding of the float64 sum (summed in order in float32 it was 2–4e-6 off)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(4)
        g = torch.rand(12544, 128, generator=gen) + 1
        h = torch.rand(12544, 128, generator=gen)  # all positive: nothing masked
        sums = native.relu_mask_and_sum(g.clone(), h)
        exact = g.double().sum(0)
        assert ((sums.double() - exact).abs() / exact).max() < 2e-7
    finally:
        torch.set_num_threads(before)
