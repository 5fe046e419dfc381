"""Contact sheets: grid layout, shape checks, PNG writing, and a sheet from a shard sample."""

import io
import tarfile

import cv2
import numpy as np
import pytest

from openuni_builder import pixelplanes
from openuni_builder.commands.previews import main
from openuni_builder.publish.previews import GAP, HEADER, LABEL_WIDTH, contact_sheet, sample_contact_sheet, save_png
from openuni_builder.video_io import encode_mp4

T, H, W = 9, 32, 48


def _rgb():
    rgb = np.zeros((T, H, W, 3), np.uint8)
    rgb[..., 0] = np.arange(T)[:, None, None] * 20  # frame index readable from the red channel
    return rgb


def test_grid_places_frames_in_columns_and_modalities_in_rows():
    rgb = _rgb()
    flow = np.full((T, H, W, 3), 77, np.uint8)
    sheet = contact_sheet(rgb, {"flow": flow}, n_frames=3)
    assert sheet.shape == (HEADER + 2 * (H + GAP), LABEL_WIDTH + 3 * (W + GAP), 3)
    for col, t in enumerate((0, 4, 8)):  # evenly spaced, first and last included
        left = LABEL_WIDTH + col * (W + GAP)
        assert sheet[HEADER + H // 2, left + W // 2, 0] == t * 20
        assert (sheet[HEADER + H + GAP + H // 2, left + W // 2] == 77).all()


def test_mismatched_plane_is_refused():
    with pytest.raises(ValueError, match="depth must be"):
        contact_sheet(_rgb(), {"depth": np.zeros((T - 1, H, W, 3), np.uint8)})


def test_save_png_writes_rgb(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 200
    save_png(tmp_path / "sub" / "a.png", image)
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "sub" / "a.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)


def _shard(path, key="src-vid_0-abc"):
    flow = np.random.default_rng(0).normal(size=(T - 1, H, W, 2)).astype(np.float32)
    frames, _ = pixelplanes.encode("flow", {"flow": flow}, T)
    members = {"mp4": encode_mp4(_rgb(), 16), "flow.mp4": encode_mp4(frames, 16, pixelplanes.storage("flow")),
               "json": b"{}"}
    with tarfile.open(path, "w") as tar:
        for suffix, data in members.items():
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return members


def test_sheet_from_a_shard_sample(tmp_path, capsys):
    members = _shard(tmp_path / "s.tar")
    sheet = sample_contact_sheet(members, n_frames=2)
    assert sheet.shape[0] == HEADER + 2 * (H + GAP)
    main([str(tmp_path / "s.tar"), str(tmp_path / "out")])
    assert (tmp_path / "out" / "src-vid_0-abc.png").exists()
    with pytest.raises(ValueError, match="no RGB"):
        sample_contact_sheet({"flow.mp4": members["flow.mp4"]})
