"""The bench scripts' plumbing (no timings): every script answers --help, summary lines parse,
bench manifests and pipelines are valid inputs to a build, and the GPU bench bows out cleanly
without a GPU. The benches themselves are run by hand (docs/BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from openuni_builder.clip import ClipSpec
from openuni_builder.config import load_config
from openuni_builder.sources import SourceContext, get_source

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["floor", "peer", "scaling", "gpu", "data_plane", "driver_scale", "v2d_driver", "storage_pareto"]


def _harness():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import harness

    return harness


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "v2d_driver"])
def test_every_script_has_help(script):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "bench " in out.stdout


def test_emit_lines_parse_back(capsys):
    harness = _harness()
    line = harness.emit("floor_ratio", b_over_a=3.14159, met=False, spec="49x256x256@16", note="two words")
    assert capsys.readouterr().out.strip() == line
    figure, fields = harness.parse(line)
    assert figure == "floor_ratio"
    assert fields == {"b_over_a": "3.142", "met": "False", "spec": "49x256x256@16", "note": "two_words"}
    with pytest.raises(ValueError):
        harness.parse("not a bench line")


def test_repeated_manifest_lists_distinct_clips_a_build_accepts(tmp_path):
    harness = _harness()
    spec = ClipSpec(num_frames=5, fps=8.0, height=32, width=32)
    clips = harness.sample_clips(tmp_path / "clips", spec, num_synthetic=1, real=False)
    copies = harness.repeated(clips, 3, spec)
    manifest = harness.write_manifest(copies, tmp_path / "m.csv")
    ctx = SourceContext(input=manifest, work_dir=tmp_path, spec=spec)
    requests = list(get_source("manifest").requests(ctx))
    assert len(requests) == 3 and len({r.key for r in requests}) == 3
    assert all(Path(r.path).exists() for r in requests)


def test_bench_pipeline_is_dis_flow_at_the_given_spec(tmp_path):
    harness = _harness()
    spec = ClipSpec(num_frames=9, fps=8.0, height=32, width=48)
    base = load_config(harness.resolve("openuni"))
    cfg = load_config(harness.pipeline_yaml(tmp_path, spec))
    assert cfg.spec == spec and cfg.shards == base.shards
    assert [(a.name, a.options.backend) for a in cfg.annotators] == [("flow", "dis")]
    shared = load_config(harness.pipeline_yaml(tmp_path, spec, cpu_share=0.5))
    assert shared.decode.num_cpus == shared.encode.num_cpus == 0.5
    assert all(a.resources["num_cpus"] == 0.5 for a in shared.annotators)


def test_gpu_bench_without_cuda_says_so_and_exits_zero():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "bench gpu skipped=no_cuda_device" in out.stdout
