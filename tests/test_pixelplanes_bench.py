"""The storage bench runs on a tiny clip and prints one parseable line per figure."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("skvideo")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "pixelplanes_storage.py"


def test_bench_prints_parseable_lines(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("pixelplanes_storage", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--frames", "5", "--size", "32", "--preview", str(tmp_path / "p.png")])
    lines = capsys.readouterr().out.splitlines()
    rows = [dict(cell.split("=", 1) for cell in line.split()[1:]) for line in lines
            if line.startswith("pixelplanes_storage ")]
    assert {r["modality"] for r in rows} == {"rgb", "depth", "flow", "seg", "skeleton", "densepose"}
    lossless = [r for r in rows if r["storage"] == "x264rgb_lossless"]
    assert len(lossless) == 5 and all(r["pixel_max"] == "0" for r in lossless)
    assert all(r["pixel_max"] == "0" for r in rows if r["storage"] == "x264rgb_lossless_fast")
    assert all(float(r["bytes_per_frame"]) > 0 for r in rows)
    assert sum(line.startswith("pixelplanes_default ") for line in lines) == 5
    assert (tmp_path / "p.png").exists()
