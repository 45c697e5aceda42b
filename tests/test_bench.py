"""`fffcpu bench` and the asv suites: structure, the baselines' correctness, and no benchmark rots.

Nothing here asserts a speed: speed is what the benchmarks report, never what a test checks.
"""
import argparse
import importlib
import inspect
import io
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fffcpu import bench
from fffcpu.fff import FFF
from fffcpu.neuron_tree import NeuronTreeFFF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASUREMENT_KEYS = {"record", "variant", "config", "task", "implementation", "batch", "seconds",
                    "per_sample_seconds", "speedup_vs_dense", "number", "repeats", "threads"}
MACHINE_KEYS = {"cpu", "cores", "threads", "numpy", "numba", "scipy", "blas", "python", "fffcpu", "date"}


def run_bench(*argv):
    """Run ``fffcpu bench`` in-process through its subcommand parser; return (exit status, stdout)."""
    parser = argparse.ArgumentParser(prog="fffcpu")
    bench.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *argv])
    out = io.StringIO()
    status = args.func(args, stdout=out)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def quick_json():
    status, text = run_bench("--quick", "--json", "--repeats", "2", "--threads", "1")
    assert status == 0
    return [json.loads(line) for line in text.splitlines()]


def test_json_has_machine_line_then_measurements(quick_json):
    machine, *rest = quick_json
    assert machine["record"] == "machine"
    assert MACHINE_KEYS <= set(machine)
    assert machine["threads"] == 1
    assert rest and {r["record"] for r in rest} <= {"measurement", "skipped"}
    for r in rest:
        if r["record"] == "measurement":
            assert MEASUREMENT_KEYS <= set(r), sorted(MEASUREMENT_KEYS - set(r))
            assert r["seconds"] > 0 and r["per_sample_seconds"] == pytest.approx(r["seconds"] / r["batch"])
            # the name is the configuration's, the sizes are --quick's: the record says which
            assert r["quick"] is True and r["sizes"] == bench.CONFIGS[r["config"]]["quick"]["sizes"]
        else:
            assert r["reason"]


def test_json_covers_every_config_batch_and_the_dense_ratio(quick_json):
    meas = [r for r in quick_json if r["record"] == "measurement"]
    for name, cfg in bench.CONFIGS.items():
        for batch in cfg["quick"]["batches"]:
            group = {r["implementation"]: r for r in meas if r["config"] == name and r["batch"] == batch}
            assert "dense numpy" in group and "fffcpu numpy" in group, (name, batch, sorted(group))
            stream = {"fffcpu kernels, stream", "dense numpy, stream"}
            if cfg["task"] == "inference":
                assert "fffcpu kernels" in group
                assert (stream <= set(group)) == (batch == 1), (name, batch, sorted(group))
            else:
                assert not stream & set(group)
            assert group["dense numpy"]["speedup_vs_dense"] == pytest.approx(1.0)
            for impl, r in group.items():
                dense = group["dense numpy, stream" if impl.endswith(", stream") else "dense numpy"]
                assert r["speedup_vs_dense"] == pytest.approx(dense["seconds"] / r["seconds"])
                assert r["variant"] == cfg["variant"] and r["task"] == cfg["task"]


def test_the_stream_rows_take_a_different_sample_each_call_in_turn(monkeypatch):
    """``, stream``: a token stream, each call the next sample of a pool (the other rows repeat one)."""
    monkeypatch.setattr(bench, "STREAM_POOL", 3)
    seen = []
    monkeypatch.setattr(bench, "dense_forward", lambda x, *weights: seen.append(x) or x)
    cfg = bench.CONFIGS["ufb-768-d11"]
    sizes = cfg["quick"]["sizes"]
    impls = dict(bench._inference_impls(cfg, sizes, 1, False, 1))
    call = impls["dense numpy, stream"](np.zeros((1, sizes["input_width"]), np.float32))
    seen.clear()  # the builder's compiling call
    for _ in range(7):
        call()
    assert all(x.shape == (1, sizes["input_width"]) for x in seen)
    firsts = [float(x[0, 0]) for x in seen]
    assert len(set(firsts[:3])) == 3 and firsts[3:] == firsts[:3] + firsts[:1]  # three samples, in turn
    assert "dense numpy, stream" not in dict(bench._inference_impls(cfg, sizes, 1, False, 2))


def test_a_full_size_record_names_the_configurations_own_sizes():
    results = bench.run_configs(["ufb-768-d11"], batches=[1], repeats=1, min_time=0.0, threads=1, peers=False)
    assert results and all(r["quick"] is False and r["sizes"] == bench.CONFIGS["ufb-768-d11"]["sizes"]
                           for r in results)


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_a_run_from_python_gives_numbas_thread_count_back():
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        bench.run_configs(["ufb-768-d11"], batches=[2], repeats=1, min_time=0.0, threads=1, quick=True,
                          peers=False)
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


def test_table_output_names_machine_configs_and_implementations():
    status, text = run_bench("--quick", "--no-peers", "--repeats", "1", "--configs", "ufb-768-d11",
                             "--batches", "3")
    assert status == 0
    assert text.startswith("machine: ")
    header = [line for line in text.splitlines() if line.startswith("config")]
    assert header and header[0].split()[:3] == ["config", "batch", "implementation"]
    rows = [line.split() for line in text.splitlines() if line.startswith("ufb-768-d11 ")]
    assert {" ".join(r[2:4]) for r in rows} == {"fffcpu kernels", "fffcpu numpy", "dense numpy"}
    assert all(r[1] == "3" for r in rows)
    assert "torch" not in text.split("\n\n", 2)[-1]
    # the rows keep the configuration's name; the header says they ran at the tiny sizes
    assert "--quick: ufb-768-d11 at input_width 24, output_width 16, depth 3, parallel_size 1" in text
    assert "depth 11" not in text


def test_scaling_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "scaling.png"
    status, text = run_bench("--quick", "--scaling", "--repeats", "1", "--batches", "2", "--plot", str(png))
    assert status == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line.split() for line in text.splitlines() if line[:1].isdigit() or line.lstrip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["64", "128", "256"]


def test_plot_paths_that_cannot_be_written_are_refused_before_measuring(tmp_path, capsys):
    """--plot '' was ignored without a word; a folder or a name without a suffix got ".png" added by
    matplotlib while the message named the path as given ("plot written to /tmp"); an unknown suffix
    failed only after the whole sweep."""
    pytest.importorskip("matplotlib")
    for path, message in [("", "--plot must name an image file such as scaling.png, got ''"),
                          (str(tmp_path), f"--plot must name an image file such as scaling.png, got {str(tmp_path)!r}, a folder"),
                          (str(tmp_path / "plot"), f"got {str(tmp_path / 'plot')!r} with no suffix"),
                          (str(tmp_path / "p.bogus"), f"got {str(tmp_path / 'p.bogus')!r} with the suffix '.bogus'")]:
        status, text = run_bench("--quick", "--scaling", "--repeats", "1", "--batches", "1", "--plot", path)
        assert status == 2 and text == ""  # nothing measured
        err = capsys.readouterr().err
        assert message in err, err
        assert "--plot must end in an image format's suffix (" in err or "image file" in err
    assert run_bench("--plot", "")[0] == 2  # an empty --plot still needs --scaling
    assert "--plot needs --scaling" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # --no-peers with --scaling was ignored without a word (the sweep measures no peers)
    assert run_bench("--quick", "--scaling", "--no-peers", "--repeats", "1", "--batches", "1") == (2, "")
    assert "--no-peers applies to the configurations' run only" in capsys.readouterr().err


def test_the_plot_format_follows_the_suffix_and_the_write_is_atomic(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    rec = dict(record="scaling", width=64, implementation="dense numpy relu", batch=1, per_sample_seconds=1e-6)
    svg = tmp_path / "p.svg"
    bench.plot_scaling([rec], str(svg))
    assert b"<svg" in svg.read_bytes()[:400]
    png = tmp_path / "p.png"
    bench.plot_scaling([rec], str(png))
    before = png.read_bytes()
    from matplotlib.figure import Figure

    def broken(fig, f, **kw):
        f.write(b"half a plot")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        bench.plot_scaling([rec], str(png))
    assert png.read_bytes() == before  # the earlier plot is intact, no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "p.svg"]


def test_plot_scaling_from_python_takes_a_bare_name_or_a_file_object(tmp_path):
    """The atomic write made plot_scaling refuse a name without a suffix (matplotlib wrote name.png)
    and a file object, which it took before; and it replaced a write-protected plot."""
    pytest.importorskip("matplotlib")
    import io as io_bytes
    rec = dict(record="scaling", width=64, implementation="dense numpy relu", batch=1, per_sample_seconds=1e-6)
    bench.plot_scaling([rec], str(tmp_path / "bare"))
    assert (tmp_path / "bare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib
    buf = io_bytes.BytesIO()
    with matplotlib.rc_context({"savefig.format": "svg"}):  # a file object gets a PNG, as documented
        bench.plot_scaling([rec], buf)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    protected = tmp_path / "bare.png"
    protected.chmod(0o444)
    if not os.access(protected, os.W_OK):  # (root may write anything)
        with pytest.raises(PermissionError, match="write-protected"):
            bench.plot_scaling([rec], str(protected))


def test_the_machine_record_says_how_many_blas_threads_the_dense_baseline_had(monkeypatch):
    """Without threadpoolctl BLAS ran on every core while the records said threads 1."""
    import importlib.util
    info = bench.machine_info(1)
    if importlib.util.find_spec("threadpoolctl") is not None:
        assert info["blas_threads"] == 1 and ", 1 BLAS thread)" in bench.format_machine(info)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "threadpoolctl" else real(name, *a))
    info = bench.machine_info(1)
    assert info["blas_threads"] == "not limited (threadpoolctl not installed)"
    assert ", BLAS threads not limited (threadpoolctl not installed))" in bench.format_machine(info)


def test_plot_into_a_missing_folder_is_refused_before_measuring(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # without it, the missing matplotlib is what --plot reports
    png = tmp_path / "missing" / "scaling.png"
    status, text = run_bench("--quick", "--scaling", "--repeats", "1", "--batches", "1", "--plot", str(png))
    assert status == 2 and text == ""  # nothing measured
    assert f"--plot must be a file in an existing folder, got {str(png)!r}" in capsys.readouterr().err


def test_scaling_json_records():
    status, text = run_bench("--quick", "--scaling", "--json", "--repeats", "1", "--batches", "1")
    assert status == 0
    recs = [json.loads(line) for line in text.splitlines()][1:]
    assert {r["width"] for r in recs} == {64, 128, 256}
    assert {r["io_width"] for r in recs} == {32} and all(r["quick"] is True for r in recs)  # --quick's sizes
    assert {r.get("leaf_width") for r in recs if r["variant"] == "fff"} == {4}  # not 768 and 16
    assert all("leaf_width" not in r for r in recs if r["variant"] == "neuron_tree")  # it has no leaves
    assert {r["implementation"] for r in recs} == {"leaf FFF kernels", "neuron tree kernels",
                                                  "dense numpy relu", "dense numpy gelu"}


@pytest.mark.parametrize("config, variant, impls", [
    ("ufb-768-d11", "neuron_tree", {"neuron tree kernels", "dense numpy gelu"}),
    ("leaf-768-d8-l16", "fff", {"leaf FFF kernels", "dense numpy relu"}),
])
def test_scaling_sweeps_the_variant_of_the_configs_asked_for(config, variant, impls):
    # --scaling ignored --configs and swept both variants whatever was asked
    status, text = run_bench("--quick", "--scaling", "--json", "--repeats", "1", "--batches", "1",
                             "--configs", config)
    assert status == 0
    recs = [json.loads(line) for line in text.splitlines()][1:]
    assert {r["implementation"] for r in recs} == impls
    assert {r["variant"] for r in recs} == {variant}
    assert {r["width"] for r in recs} == {64, 128, 256}


def test_scaling_refuses_a_training_config_naming_both_options(capsys):
    status, text = run_bench("--quick", "--scaling", "--repeats", "1", "--configs", "ufb-768-d11",
                             "leaf-784-d6-l8")
    assert status == 2 and text == ""  # refused before measuring
    err = capsys.readouterr().err
    assert "--configs with --scaling must name inference configurations" in err
    assert "(of ufb-768-d11 leaf-768-d8-l16), got leaf-784-d6-l8" in err


def test_run_scaling_refuses_unknown_variants():
    for bad in (["fff", "dense"], [], "fff"):
        expected = "variants must be a non-empty sequence of 'fff', 'neuron_tree', got " + repr(bad)
        with pytest.raises(ValueError, match=re.escape(expected)):
            bench.run_scaling(widths=(64,), batches=(1,), variants=bad)


def test_bad_arguments_are_refused(capsys):
    assert run_bench("--plot", "x.png")[0] == 2
    assert "--plot needs --scaling" in capsys.readouterr().err
    for bad in (["--batches", "0"], ["--repeats", "x"], ["--configs", "nope"]):
        with pytest.raises(SystemExit):
            run_bench(*bad)
        assert "bench" in capsys.readouterr().err


def test_the_default_threads_are_those_numba_can_run_not_the_hosts_cpus(monkeypatch):
    # a host with more CPUs than this process may use (taskset, a container's cpuset): os.cpu_count()
    # counts them all, Numba starts with the usable ones, and the default run asked Numba for too many
    import numba
    monkeypatch.setattr(os, "cpu_count", lambda: numba.config.NUMBA_NUM_THREADS + 3)
    status, text = run_bench("--quick", "--no-peers", "--json", "--repeats", "1", "--configs", "ufb-768-d11",
                             "--batches", "2")
    assert status == 0
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["threads"] == numba.config.NUMBA_NUM_THREADS
    assert {r["threads"] for r in records[1:]} == {numba.config.NUMBA_NUM_THREADS}


def test_the_machine_records_cores_this_process_may_use_and_the_hosts_apart(monkeypatch, tmp_path):
    # under taskset or a container's cpuset os.cpu_count() counts CPUs the run cannot use: "cores" said 8
    # for a process pinned to one CPU
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    info = bench.machine_info(1)
    assert (info["cores"], info["host_cores"]) == (1, 8)
    assert ", 1 of 8 cores (" in bench.format_machine(info)
    status, text = run_bench("--quick", "--no-peers", "--json", "--repeats", "1", "--configs", "ufb-768-d11",
                             "--batches", "1", "--threads", "1")
    assert status == 0
    machine = json.loads(text.splitlines()[0])
    assert (machine["cores"], machine["host_cores"]) == (1, 8)
    # the plot's title says the same
    figure = pytest.importorskip("matplotlib.figure")
    titles = []
    monkeypatch.setattr(figure.Figure, "savefig",
                        lambda fig, *a, **k: titles.append(fig.axes[0].get_title()))
    rec = dict(record="scaling", width=64, implementation="dense numpy relu", batch=1,
               per_sample_seconds=1e-6)
    bench.plot_scaling([rec], str(tmp_path / "p.png"), info)
    assert titles and ", 1 of 8 cores, 1 thread(s)" in titles[0]


def test_cores_fall_back_to_the_hosts_count_without_an_affinity_call(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    info = bench.machine_info(2)
    assert (info["cores"], info["host_cores"]) == (6, 6)
    assert ", 6 cores (" in bench.format_machine(info)  # no "6 of 6"
    old = {k: v for k, v in info.items() if k != "host_cores"}  # a record from before host_cores
    assert ", 6 cores (" in bench.format_machine(old)


def test_more_threads_than_numba_runs_are_refused_naming_the_option_before_measuring(capsys):
    import numba
    n = numba.config.NUMBA_NUM_THREADS
    status, text = run_bench("--quick", "--threads", str(n + 1))
    assert status == 2 and text == ""
    assert f"--threads must be at most {n} (the threads Numba can run: NUMBA_NUM_THREADS), got {n + 1}" \
        in capsys.readouterr().err


def test_measure_excludes_the_warm_up_and_reports_the_median():
    calls = []
    median, number = bench.measure(lambda: calls.append(1), repeats=4, min_time=0.0)
    assert number == 1
    assert len(calls) == 1 + 2 + 4  # warm-up, calibration (two runs), repeats
    assert median >= 0


def test_format_seconds():
    assert bench.format_seconds(1.5) == "1.5 s"
    assert bench.format_seconds(0.0123) == "12.3 ms"
    assert bench.format_seconds(3.1e-6) == "3.1 µs"
    assert bench.format_seconds(None) == "-"


# -- the baselines compute what they claim ------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_dense_baseline_equals_a_depth_0_fff(activation):
    layer = FFF(7, 5, 3, 0, activation=activation, seed=1, dtype="float64", backend="numpy")
    x = np.random.default_rng(2).standard_normal((6, 7))
    y = bench.dense_forward(x, *bench.dense_weights_of(layer), activation)
    np.testing.assert_allclose(y, layer(x), rtol=1e-12, atol=1e-12)


def test_dense_weights_of_a_leaf_fff_stack_the_leaves():
    layer = FFF(4, 3, 2, 2, seed=0)
    w1, b1, w2, b2 = bench.dense_weights_of(layer)
    assert w1.shape == (4, 12) and b1.shape == (12,) and w2.shape == (12, 2) and b2.shape == (2,)
    np.testing.assert_array_equal(w1[:, 3:6], layer.params["w1s"][1])
    np.testing.assert_array_equal(w2[3:6], layer.params["w2s"][1])
    layer.params["b2s"][...] = np.arange(8, dtype=np.float32).reshape(4, 2)
    b1, b2 = bench.dense_weights_of(layer)[1::2]
    np.testing.assert_array_equal(b1[3:6], layer.params["b1s"][1])
    np.testing.assert_array_equal(b2, [3, 4])  # the mean of the leaves' b2s


def test_torch_neuron_tree_equals_the_reference():
    torch = pytest.importorskip("torch")
    layer = NeuronTreeFFF(9, 4, 3, parallel_size=2, seed=3, dtype="float32", backend="numpy")
    x = np.random.default_rng(4).standard_normal((11, 9)).astype(np.float32)
    forward = bench.torch_neuron_tree(torch, layer)
    with torch.inference_mode():
        y = forward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, layer(x), rtol=1e-5, atol=1e-6)


def test_fastfeedforward_peer_gets_the_same_weights():
    torch = pytest.importorskip("torch")
    pytest.importorskip("fastfeedforward")
    layer = FFF(6, 3, 4, 2, seed=5)
    model = bench._fastfeedforward_model(torch, layer)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(getattr(model, name).detach().numpy(), value)


# -- no benchmark rots: every asv benchmark's setup and one call, at tiny sizes ----------------------
BENCH_PREFIXES = ("time_", "peakmem_", "track_", "timeraw_", "mem_")


THREAD_VARIABLES = ("FFFCPU_ASV_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@pytest.fixture(autouse=True, scope="module")
def thread_variables_left_as_found():
    """Importing `benchmarks` may set the thread variables; one test left NUMBA_NUM_THREADS=1 behind,
    and every later compile in the session failed ("Cannot set NUMBA_NUM_THREADS to a different value
    once the threads have been launched"): 88 tests of a fresh clone with an empty Numba cache."""
    before = {var: os.environ.get(var) for var in THREAD_VARIABLES}
    yield
    assert {var: os.environ.get(var) for var in THREAD_VARIABLES} == before


@pytest.fixture
def suite_threads():
    """The suites' setup() fixes Numba's and BLAS's threads for the process (benchmarks.common.
    fix_threads); give the rest of the session its own counts back."""
    from fffcpu import _kernel_api
    numba_before = _kernel_api.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
    else:
        with threadpool_limits(limits=None):  # restores every library's count on exit
            yield
    _kernel_api.set_num_threads(numba_before)


def _fresh_benchmarks(monkeypatch):
    """Forget imported benchmark modules; the package's import may set the thread variables (it does
    under asv or with FFFCPU_ASV_THREADS set), so they are put back after the test."""
    for var in THREAD_VARIABLES:
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:  # recorded as absent (delenv alone records nothing), so the undo removes what the import set
            monkeypatch.setenv(var, "")
            monkeypatch.delenv(var)
    monkeypatch.syspath_prepend(ROOT)
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)


def _bench_modules(monkeypatch):
    monkeypatch.setenv("FFFCPU_BENCH_TINY", "1")
    _fresh_benchmarks(monkeypatch)
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "benchmarks"))
                   if f.startswith("bench_") and f.endswith(".py"))
    assert names, "no benchmark modules found"
    return [importlib.import_module(f"benchmarks.{n}") for n in names]


def _param_sets(cls):
    params = getattr(cls, "params", None)
    if params is None:
        return [()]
    if isinstance(params, tuple) or (params and isinstance(params[0], list)):
        return list(itertools.product(*params))
    return [(p,) for p in params]


def test_every_asv_benchmark_runs_once(monkeypatch, suite_threads):
    modules = _bench_modules(monkeypatch)
    assert importlib.import_module("benchmarks.common").TINY
    ran = []
    for module in modules:
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            methods = [m for m in dir(cls) if m.startswith(BENCH_PREFIXES)]
            if not methods:
                continue
            names = getattr(cls, "param_names", [])
            for params in _param_sets(cls):
                assert len(params) == len(names) or not names, (cls_name, params, names)
                bench_obj = cls()
                if hasattr(bench_obj, "setup"):
                    bench_obj.setup(*params)  # NotImplementedError here means a missing module: a failure
                try:
                    for m in methods:
                        if m.startswith("timeraw_"):
                            continue
                        value = getattr(bench_obj, m)(*params)
                        if m.startswith("track_"):
                            assert isinstance(value, (int, float)) and np.isfinite(value), (cls_name, m)
                            assert getattr(cls, m).unit, f"{cls_name}.{m} needs a unit"
                        ran.append(f"{cls_name}.{m}{params}")
                finally:
                    if hasattr(bench_obj, "teardown"):
                        bench_obj.teardown(*params)
    assert len(ran) >= 20, ran


def test_batch_inference_peakmem_sees_the_calls_output_not_setups_peak():
    # asv reports ru_maxrss after the body; setup's transients and the heap glibc kept from them hid a
    # whole batch's output (12 MiB at batch 4096): the kernels' number did not move when a call allocated
    code = textwrap.dedent("""
        import resource
        from benchmarks.bench_inference import BatchInferenceMemory
        for variant in ("fff", "neuron_tree"):
            b = BatchInferenceMemory()
            b.setup(variant, "kernels", 4096)
            rss = int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
            b.peakmem_forward(variant, "kernels", 4096)
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss  # KiB
            print(variant, grew * 1024 / b.x.nbytes)  # the output has the input's size
        """)
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs")
    env = {k: v for k, v in os.environ.items() if k != "FFFCPU_BENCH_TINY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    for line in lines:
        variant, ratio = line.split()
        assert float(ratio) >= 0.9, (variant, ratio)


def test_asv_versions_name_the_threads_and_tell_tiny_results_from_full_size(monkeypatch):
    # asv compares and graphs only results of the same benchmark version; its default (a hash of the
    # benchmark's source) let tiny results, and results at other thread counts, join the history
    versions = {}
    for tiny, threads in (("1", "1"), ("0", "1"), ("0", "2")):
        monkeypatch.setenv("FFFCPU_BENCH_TINY", tiny)
        _fresh_benchmarks(monkeypatch)
        monkeypatch.setenv("FFFCPU_ASV_THREADS", threads)
        modules = [importlib.import_module(f"benchmarks.{n}") for n in ("bench_inference", "bench_training",
                                                                         "bench_io")]
        suites = [cls for m in modules for _, cls in inspect.getmembers(m, inspect.isclass)
                  if cls.__module__ == m.__name__ and any(a.startswith(BENCH_PREFIXES) for a in dir(cls))]
        assert suites
        for cls in suites:
            assert f"threads={threads}" in cls.version, cls.__name__
            versions.setdefault(cls.__name__, set()).add(cls.version)
    assert all(len(v) == 3 for v in versions.values()), versions


def test_under_asv_the_suites_run_numba_and_blas_at_the_threads_asked_for():
    # asv-runner imports the suites before NumPy is loaded and forks each benchmark from that process;
    # unlimited, the dense baseline's BLAS and the kernels' Numba threads made ratios swing by 80x
    code = textwrap.dedent("""
        import sys
        sys.modules.setdefault("asv_runner", type(sys)("asv_runner"))  # what asv has imported first
        from benchmarks.bench_inference import SpeedupVsDense
        import numba, os
        b = SpeedupVsDense()
        b.setup("neuron_tree", 1)
        print(os.environ["OPENBLAS_NUM_THREADS"], numba.config.NUMBA_NUM_THREADS, numba.get_num_threads())
        try:
            from threadpoolctl import threadpool_info
        except ImportError:
            pass
        else:
            print(sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
        """)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(FFFCPU_BENCH_TINY="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1 1 1", lines
    assert lines[1:] in ([], ["[1]"]), lines


def test_the_speedup_times_dense_and_kernels_in_alternating_blocks(monkeypatch):
    # one after the other, a change of load between the two landed in the ratio (275, 86.6, 3.29)
    _bench_modules(monkeypatch)
    common = importlib.import_module("benchmarks.common")
    calls = []
    ratio = common.paired_speedup(lambda: calls.append("dense"), lambda: calls.append("kernels"),
                                  min_time=0.0, repeats=4)
    assert np.isfinite(ratio) and ratio > 0
    blocks = [k for k, _ in itertools.groupby(calls)]
    assert blocks.count("dense") >= 4 and blocks.count("kernels") >= 4, blocks


def test_inference_timings_rerun_setup_without_rebuilding_the_layer(monkeypatch, suite_threads):
    # asv-runner 0.3+ re-runs setup() before every timed call; rebuilding the weights there left the
    # timed call with cold caches (a one-sample leaf-768-d8-l16 call timed at 16 µs instead of 6 µs)
    _bench_modules(monkeypatch)  # tiny sizes, fresh imports
    inference = importlib.import_module("benchmarks.bench_inference")
    real, builds = inference._build, []
    monkeypatch.setattr(inference, "_build", lambda *a: builds.append(a) or real(*a))
    n_sets = 0
    for cls in (inference.LeafFFFInference, inference.NeuronTreeInference, inference.TargetInference):
        for params in _param_sets(cls):
            n_sets += 1
            for _ in range(3):  # asv: setup, timed call, setup, timed call, ...
                bench_obj = cls()
                bench_obj.setup(*params)
                bench_obj.time_forward(*params)
    assert len(builds) == n_sets, builds


def test_asv_times_the_speed_targets_calls_kernels_and_dense(monkeypatch, suite_threads):
    # the targets are ufb-768-d11 at batch 4096 and one sample and leaf-768-d8-l16 at batch 1024, each
    # against the dense FF of its training width; asv timed batches 1 and 256 only
    monkeypatch.delenv("FFFCPU_BENCH_TINY", raising=False)  # the full sizes; nothing is built below
    _fresh_benchmarks(monkeypatch)
    inference = importlib.import_module("benchmarks.bench_inference")
    common = importlib.import_module("benchmarks.common")
    assert not common.TINY
    config_of = {cfg["variant"]: name for name, cfg in bench.CONFIGS.items() if cfg["task"] == "inference"}
    sizes = {"fff": common.LEAF_INFER, "neuron_tree": common.TREE_INFER}
    for variant, name in config_of.items():
        assert sizes[variant] == bench.CONFIGS[name]["sizes"], name
    assert common.training_width("fff", sizes["fff"]) == 4096
    assert common.training_width("neuron_tree", sizes["neuron_tree"]) == 4095
    builds = []
    monkeypatch.setattr(inference, "_build", lambda *a: builds.append(a) or ((lambda: None), None))
    targets = {("ufb-768-d11", 4096, "kernels"), ("ufb-768-d11", 4096, "dense"), ("ufb-768-d11", 1, "kernels"),
               ("ufb-768-d11", 1, "dense"), ("leaf-768-d8-l16", 1024, "kernels"),
               ("leaf-768-d8-l16", 1024, "dense")}
    for cls in (inference.TargetInference, inference.TargetSpeedup):
        builds.clear()
        for params in _param_sets(cls):
            cls().setup(*params)
        timed = {(config_of[variant], batch, implementation) for variant, implementation, batch in builds}
        assert timed == targets, cls.__name__


def test_every_timeraw_benchmark_runs_in_a_fresh_interpreter(monkeypatch):
    modules = _bench_modules(monkeypatch)
    codes = []
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            for m in dir(cls):
                if m.startswith("timeraw_"):
                    code = getattr(cls(), m)()
                    stmt, setup = code if isinstance(code, tuple) else (code, "")
                    codes.append(textwrap.dedent(setup) + "\n" + textwrap.dedent(stmt))
    assert codes
    for code in codes:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr


def test_format_seconds_at_unit_boundaries():
    assert bench.format_seconds(1.0) == "1 s"
    assert bench.format_seconds(1e-3) == "1 ms"
    assert bench.format_seconds(250e-6) == "250 µs"  # three digits: no decimals
    assert bench.format_seconds(99.5e-9) == "99.5 ns"
    assert bench.format_seconds(0.0) == "0 s"


def test_table_blocks_per_config_and_batch_and_lists_the_skipped():
    def meas(config, batch, impl, seconds, speedup):
        return dict(record="measurement", config=config, batch=batch, implementation=impl, seconds=seconds,
                    per_sample_seconds=seconds / batch, speedup_vs_dense=speedup)
    results = [meas("a", 1, "dense numpy", 2e-3, 1.0), meas("a", 1, "fffcpu kernels", 1e-3, 2.0),
               dict(record="skipped", config="a", implementation="dense torch", batch=1, reason="no torch"),
               meas("a", 4, "dense numpy", 4e-3, None), meas("b", 4, "dense numpy", 8e-3, 1.0)]
    lines = bench.format_table(results).splitlines()
    assert lines[0].split() == ["config", "batch", "implementation", "median", "per", "sample", "vs", "dense"]
    assert set(lines[1]) == {"-", " "}
    assert [line.split()[:2] if line else [] for line in lines[2:9]] == [
        ["a", "1"], ["a", "1"], [], ["a", "4"], [], ["b", "4"], ["skipped", "dense"]]
    assert lines[3].split()[-1] == "2.00x" and lines[5].split()[-1] == "-"
    assert lines[8] == "skipped dense torch for a: no torch" and len(lines) == 9


def test_machine_line_counts_threads():
    info = dict(cpu="CPU", cpu_flags=[], cores=2, host_cores=2, threads=1, python="3", numpy="2",
                blas="b", numba="n", scipy="s", torch=None, fastfeedforward=None, fffcpu="f", commit=None,
                date="d", load_average=0.5)
    assert ", 2 cores (no AVX flags), 1 thread; " in bench.format_machine(info)
    assert ", 2 threads; " in bench.format_machine(dict(info, threads=2))


def test_cli_defaults_reach_the_runs(monkeypatch):
    """Repeats, minimum time, threads and the --scaling sweep as the options and their defaults say."""
    seen = {}
    monkeypatch.setattr(bench, "run_configs", lambda configs, **kw: seen.update(kw, configs=configs) or [])
    monkeypatch.setattr(bench, "run_scaling", lambda **kw: seen.update(kw) or [])
    threads = bench.default_threads()
    for argv, want in [((), dict(repeats=7, min_time=0.02, threads=threads, configs=list(bench.CONFIGS))),
                       (("--quick", "--repeats", "4", "--threads", "1"), dict(repeats=4, min_time=0.001, threads=1)),
                       (("--quick",), dict(repeats=3)),
                       (("--scaling",), dict(repeats=5, min_time=0.02, widths=bench.SCALING_WIDTHS,
                                             io=bench.SCALING_IO, leaf_width=bench.SCALING_LEAF_WIDTH)),
                       (("--scaling", "--quick"), dict(repeats=3, min_time=0.001, widths=(64, 128, 256), io=32,
                                                       leaf_width=4))]:
        seen.clear()
        assert run_bench("--json", *argv)[0] == 0
        assert {k: seen[k] for k in want} == want, argv


def test_measure_reports_the_median_time_per_call(monkeypatch):
    """With a scripted clock: calibration grows the calls per repeat until one lasts min_time, then
    the median over repeats of seconds per call."""
    # calibration: the faster of two runs at 1 call (0.01 s), then at 10 calls (0.6 s); then 3 repeats
    clock = iter([0.01, 0.02, 0.9, 0.6, 30.0, 10.0, 20.0])
    calls = []
    monkeypatch.setattr(bench, "_run", lambda fn, number: calls.append(number) or next(clock))
    assert bench.measure(lambda: None, repeats=3, min_time=0.5) == (2.0, 10)
    assert calls == [1, 1, 10, 10, 10, 10, 10]


def test_one_slow_call_does_not_end_the_calibration():
    """A single slowed call right after the warm-up (a preemption, a lazy first call) lasted min_time
    on its own: every repeat then timed one call of microseconds (dense torch at batch 1 got number 1)."""
    import time
    calls = [0]

    def fn():
        calls[0] += 1
        if calls[0] == 2:
            time.sleep(0.025)
        else:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 3e-6:
                pass

    median, number = bench.measure(fn, repeats=3, min_time=0.02)
    assert number >= 1000 and median < 1e-3, (median, number)


def test_scaling_layers_have_the_training_width():
    for width in (16, 64, 256):
        leaf = bench._scaling_layer("fff", width, 8, 16)
        assert leaf.n_leaves * leaf.leaf_width == width and leaf.depth == int(np.log2(width // 16))
        tree = bench._scaling_layer("neuron_tree", width, 8, 16)
        assert tree.n_nodes == width - 1 and tree.depth == int(np.log2(width)) - 1


def test_run_scaling_sweeps_variants_once_in_the_tables_order():
    recs = bench.run_scaling(widths=(64,), batches=(1,), repeats=1, min_time=0.0, threads=1, io=8, leaf_width=16,
                             variants=("neuron_tree", "fff", "neuron_tree"))
    assert [r["implementation"] for r in recs] == ["leaf FFF kernels", "neuron tree kernels",
                                                   "dense numpy relu", "dense numpy gelu"]


def test_scaling_text_names_the_leaf_width_only_for_the_leaf_fff(monkeypatch):
    monkeypatch.setattr(bench, "run_scaling", lambda **kw: [])
    assert bench._scaling_configs_text() == ("ufb-768-d11 the neuron tree and dense gelu, "
                                             "leaf-768-d8-l16 the leaf FFF and dense relu")
    for config, line in [("ufb-768-d11", "cost per sample, input and output width 768\n"),
                         ("leaf-768-d8-l16", "cost per sample, input and output width 768, leaf FFF leaf width 16\n")]:
        status, text = run_bench("--scaling", "--configs", config)
        assert status == 0 and f"\n{line}" in text, text


def test_no_peers_leaves_out_the_torch_rows_of_every_task():
    for name, cfg in bench.CONFIGS.items():
        sizes = cfg["quick"]["sizes"]
        if cfg["task"] == "training":
            with_peers, without = (bench._training_impls(cfg, sizes, 1, peers) for peers in (True, False))
        else:
            with_peers, without = (bench._inference_impls(cfg, sizes, 1, peers, 2) for peers in (True, False))
        with_peers, without = [n for n, _ in with_peers], [n for n, _ in without]
        assert without == ["fffcpu kernels", "fffcpu numpy", "dense numpy"][cfg["task"] == "training":], name
        assert with_peers[:len(without)] == without and "dense torch" in with_peers[len(without):], name


def test_an_unavailable_implementation_is_a_skipped_record(monkeypatch):
    def no_torch(threads):
        raise bench.Unavailable("torch is not installed")
    monkeypatch.setattr(bench, "_torch", no_torch)
    results = bench.run_configs(["ufb-768-d11"], batches=[2], repeats=1, min_time=0.0, threads=1, quick=True)
    skipped = [(r["implementation"], r["reason"]) for r in results if r["record"] == "skipped"]
    assert skipped == [("dense torch", "torch is not installed"), ("torch index_select/bmm", "torch is not installed")]
    assert "skipped dense torch for ufb-768-d11: torch is not installed" in bench.format_table(results)


def test_missing_kernels_skip_both_kernel_rows(monkeypatch):
    """Without the kernel module, 'fffcpu kernels' and 'fffcpu kernels, stream' are skipped (the
    stream row once timed the layer's fallback under the kernels' name)."""
    import sys
    import fffcpu
    monkeypatch.delattr(fffcpu, "_kernel_api")
    monkeypatch.setitem(sys.modules, "fffcpu._kernel_api", None)
    cfg = bench.CONFIGS["ufb-768-d11"]
    impls = dict(bench._inference_impls(cfg, cfg["quick"]["sizes"], 1, False, 1))
    x = np.zeros((1, cfg["quick"]["sizes"]["input_width"]), np.float32)
    for name in ("fffcpu kernels", "fffcpu kernels, stream"):
        with pytest.raises(bench.Unavailable, match="the Numba kernels are missing"):
            impls[name](x)


def test_repeated_configs_and_batches_are_refused_before_measuring(capsys):
    """--batches 4 4 measured batch 4 twice, each ratio against its own dense row, in one block; a
    repeated configuration ran twice; --scaling dropped a repeated configuration without a word."""
    for argv, message in [(["--batches", "4", "4"], "--batches must name each value once, got 4 4 (4 repeated)"),
                          (["--configs", "ufb-768-d11", "ufb-768-d11"],
                           "--configs must name each value once, got ufb-768-d11 ufb-768-d11 (ufb-768-d11 repeated)"),
                          (["--scaling", "--configs", "ufb-768-d11", "ufb-768-d11"], "(ufb-768-d11 repeated)"),
                          (["--scaling", "--batches", "2", "1", "2"], "got 2 1 2 (2 repeated)")]:
        assert run_bench("--quick", "--repeats", "1", *argv) == (2, "")
        assert message in capsys.readouterr().err


def test_a_batch_larger_than_memory_is_refused_naming_batches(monkeypatch, capsys):
    """--batches 10^12 printed the machine line, began measuring and failed with "Unable to allocate
    87.3 TiB for an array with shape (1000000000000, 24)", naming no option."""
    for argv in (["--configs", "ufb-768-d11"], ["--scaling"]):
        assert run_bench("--quick", "--repeats", "1", "--batches", "1", "1000000000000", *argv) == (2, "")
        err = capsys.readouterr().err
        assert "--batches 1000000000000 needs at least " in err and "more than this machine's " in err, err
    # the bound: inputs, the dense hidden layer and outputs of the largest configuration asked for
    need = 4 * 4096 * (768 + 4095 + 768)  # ufb-768-d11 at batch 4096: 92 MB
    monkeypatch.setattr(bench, "_physical_memory", lambda: need - 1)
    args = argparse.Namespace(batches=[1, 4096], configs=["leaf-784-d6-l8", "ufb-768-d11"], quick=False, scaling=False)
    assert bench._memory_error(args).startswith("--batches 4096 needs at least 0.0859 GiB for ufb-768-d11")
    monkeypatch.setattr(bench, "_physical_memory", lambda: need)
    assert bench._memory_error(args) is None
    monkeypatch.setattr(bench, "_physical_memory", lambda: None)  # an OS that does not say: no check
    assert bench._memory_error(args) is None


def test_plot_writers_that_fail_are_refused_before_measuring(tmp_path, monkeypatch, capsys):
    """os.access says yes to root in /sys, whose write then failed after the sweep with
    "[Errno 13] Permission denied: '/sys/.x.png...tmp'"; .pgf passed the suffix check and failed after
    the sweep with "'xelatex' not found". A small figure is written there first, and removed."""
    pytest.importorskip("matplotlib")
    import tempfile
    from matplotlib.figure import Figure
    real_savefig = Figure.savefig

    def no_pgf(fig, f, format=None, **kw):
        if format == "pgf":
            raise RuntimeError("'xelatex' not found")
        return real_savefig(fig, f, format=format, **kw)

    monkeypatch.setattr(Figure, "savefig", no_pgf)
    pgf = tmp_path / "p.pgf"
    assert run_bench("--quick", "--scaling", "--repeats", "1", "--batches", "1", "--plot", str(pgf)) == (2, "")
    assert (f"--plot names a format that cannot be written here, got {str(pgf)!r}: RuntimeError: 'xelatex' "
            "not found") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # the trial figure is removed

    def refused(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    png = tmp_path / "p.png"
    assert run_bench("--quick", "--scaling", "--repeats", "1", "--batches", "1", "--plot", str(png)) == (2, "")
    assert (f"--plot must be a file in a folder this user may write to, got {str(png)!r} ({str(tmp_path)!r}: "
            "Permission denied)") in capsys.readouterr().err
    monkeypatch.undo()
    assert bench._plot_path_error(str(png)) is None and list(tmp_path.iterdir()) == []
    # a link: the atomic write goes to its target's folder, so the trial write does too
    (tmp_path / "b").mkdir()
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "b" / "x.png")
    real_mkstemp = tempfile.mkstemp

    def only_not_in_b(*a, dir=None, **kw):
        if os.path.samefile(dir, tmp_path / "b"):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", only_not_in_b)
    assert "Permission denied" in bench._plot_path_error(str(link))
    monkeypatch.undo()
    # the trial file is named as the atomic write's: a name that fits for one fits for the other
    long_name = tmp_path / ("p" * 236 + ".png")  # 240 characters: ".<name>.XXXXXXXX.tmp" is 254
    assert bench._plot_path_error(str(long_name)) is None


def test_python_m_fffcpu_bench_handles_errors_as_the_command_does(capsys):
    """It parsed and ran by itself: an unallocatable batch was a traceback (exit 1), where `fffcpu
    bench` said one line (exit 2)."""
    assert bench.main(["--quick", "--configs", "ufb-768-d11", "--batches", "1000000000000"]) == 2
    assert capsys.readouterr().err.startswith("fffcpu bench: error: --batches 1000000000000 needs at least ")


def test_an_option_given_twice_is_refused(capsys):
    """argparse keeps the last: `--configs ufb-768-d11 --configs leaf-768-d8-l16 --batches 1 --batches 2`
    measured leaf-768-d8-l16 at batch 2 alone, without a word."""
    from fffcpu import cli
    for argv, message in [(["bench", "--batches", "1", "--batches", "2"],
                           "fffcpu bench: error: --batches was given twice, and only the last would count"),
                          (["bench", "--conf", "ufb-768-d11", "--configs=leaf-768-d8-l16"],
                           "--configs was given twice (as --conf, then as --configs)"),
                          (["train", "--epochs", "1", "-o", "m.fff", "--output=n.fff"],
                           "fffcpu train: error: --output was given twice (as -o, then as --output)"),
                          (["train", "-o", "m.fff", "-qo", "n.fff"], "--output was given twice"),  # -q -o
                          (["train", "-o", "m.fff", "-qon.fff"], "--output was given twice")]:
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    # a flag given twice loses nothing; a value that starts with "-" after "--" is no option
    args = cli.parse_args(["bench", "--quick", "--quick", "--json", "--configs", "ufb-768-d11"])
    assert args.quick and args.configs == ["ufb-768-d11"]
    assert cli.repeated_option(cli._subcommand_parser(cli.build_parser(), "bench"),
                               ["--repeats", "1", "--", "--repeats"]) is None


def test_an_unknown_option_shows_the_usage_of_its_subcommand(capsys):
    """parse_args printed the top-level usage (`fffcpu [-h] [--version] COMMAND ...`), which names no
    option of the subcommand that was mistyped."""
    from fffcpu import cli
    for argv, usage, message in [(["bench", "--quick", "--bogus"], "usage: fffcpu bench ",
                                  "fffcpu bench: error: unrecognized arguments: --bogus"),
                                 (["inspect", "m.fff", "extra"], "usage: fffcpu inspect ",
                                  "fffcpu inspect: error: unrecognized arguments: extra"),
                                 (["--bogus", "bench"], "usage: fffcpu [-h]",
                                  "fffcpu: error: unrecognized arguments: --bogus")]:
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(usage) and message in err


def test_the_standard_configurations_have_the_sizes_spec_5_names():
    """SPEC §5's table: a depth of 10 for ufb-768-d11 or a leaf width of 8 for leaf-768-d8-l16 passed
    every test that does not run the full-size configuration (a SPEC audit). The sizes are read off
    SPEC §5's own rows, and the FLOP-ratio ceilings it quotes follow from them."""
    spec = {"ufb-768-d11": dict(input_width=768, output_width=768, depth=11, parallel_size=1),
            "leaf-768-d8-l16": dict(input_width=768, leaf_width=16, output_width=768, depth=8),
            "leaf-784-d6-l8": dict(input_width=784, leaf_width=8, output_width=10, depth=6)}
    for name, sizes in spec.items():
        assert bench.CONFIGS[name]["sizes"] == sizes, name
    assert bench.CONFIGS["ufb-768-d11"]["activation"] == "gelu" and bench.CONFIGS["leaf-768-d8-l16"]["activation"] == "relu"
    assert 1024 in bench.CONFIGS["leaf-768-d8-l16"]["batches"] and 4096 in bench.CONFIGS["ufb-768-d11"]["batches"]
    assert bench.CONFIGS["leaf-784-d6-l8"]["batches"] == (256,)
    tree = NeuronTreeFFF(**spec["ufb-768-d11"], backend="numpy")
    assert (tree.training_width, tree.inference_width) == (4095, 12)  # SPEC's ceiling: 4095 / 12 = 341x
    assert FFF(**spec["leaf-768-d8-l16"], backend="numpy").training_width == 4096
    assert "(width 4096)" in bench.CONFIGS["leaf-768-d8-l16"]["what"]
    assert "(4095 neurons)" in bench.CONFIGS["ufb-768-d11"]["what"]


def test_plot_replaces_an_earlier_plot_but_not_a_file_of_another_kind(tmp_path, capsys):
    """Round 22's review: `--plot notes.pdf` replaced a user's file with the plot without a word. An
    earlier plot (a figure matplotlib wrote, or an image of the suffix's format where matplotlib does
    not name itself) is replaced; anything else is refused, before measuring and from Python."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    rec = dict(record="scaling", width=64, implementation="dense numpy relu", batch=1, per_sample_seconds=1e-6)
    notes = tmp_path / "notes.pdf"
    notes.write_text("my notes\n")
    for path in (notes, tmp_path / "photo.jpg"):
        if path.suffix == ".jpg":
            path.write_bytes(b"GIF89a not a jpeg")
        kept = path.read_bytes()
        assert run_bench("--quick", "--scaling", "--repeats", "1", "--batches", "1", "--plot", str(path)) == (2, "")
        assert (f"--plot names a file that holds something other than a plot, got {str(path)!r}: the plot would "
                "replace it") in capsys.readouterr().err
        with pytest.raises(FileExistsError, match="holds something other than a plot"):
            bench.plot_scaling([rec], str(path))
        assert path.read_bytes() == kept
    for suffix in ("pdf", "png", "svg", "jpg"):  # earlier plots, replaced
        path = tmp_path / f"plot.{suffix}"
        Figure(figsize=(1, 1)).savefig(path)
        assert bench._plot_path_error(str(path)) is None
        bench.plot_scaling([rec], str(path))
    long_name = tmp_path / ("a" * 240 + ".png")  # a valid name: the trial file is cut as the write's is
    assert bench._plot_path_error(str(long_name)) is None
    bench.plot_scaling([rec], str(long_name))
    assert long_name.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
