"""Raw sidecars (dtype policy, exact round trip, refused lossy casts) and storage choices."""

import io

import numpy as np
import pytest

from openuni_builder import pixelplanes
from openuni_builder.video_io import VideoEncoding, decode_mp4, encode_mp4


def test_sidecar_casts_to_documented_dtypes_and_round_trips():
    rng = np.random.default_rng(0)
    raw = {"flow": rng.normal(size=(2, 4, 6, 2)).astype(np.float32),
           "ids": rng.integers(0, 300, (3, 4, 6)).astype(np.int64),
           "extra": np.arange(3, dtype=np.int32)}
    back = pixelplanes.load_raw(pixelplanes.save_raw(raw))
    assert back["flow"].dtype == np.float32 and back["ids"].dtype == np.uint16
    assert back["extra"].dtype == np.int32  # unknown keys keep their dtype
    np.testing.assert_array_equal(back["ids"], raw["ids"])
    assert np.abs(back["flow"] - raw["flow"]).max() <= 1 / 128 + 1e-6  # KITTI fixed point, 1/64 px
    with np.load(io.BytesIO(pixelplanes.save_raw(raw))) as npz:
        assert npz["flow"].dtype == np.int16


def test_sidecar_refuses_lossy_casts():
    with pytest.raises(ValueError, match="outside uint16"):
        pixelplanes.save_raw({"ids": np.array([70000])})
    with pytest.raises(ValueError, match="overflows float16"):
        pixelplanes.save_raw({"disparity": np.array([1e6], np.float32)})
    with pytest.raises(ValueError, match="fixed-point range"):
        pixelplanes.save_raw({"flow": np.array([600.0], np.float32)})


def test_storage_choices():
    assert isinstance(pixelplanes.storage("flow"), VideoEncoding)
    assert pixelplanes.storage("seg", "h264_444").pix_fmt == "yuv444p"
    with pytest.raises(KeyError, match="unknown Pixelplanes storage"):
        pixelplanes.storage("flow", "gif")
    with pytest.raises(KeyError, match="unknown modality"):
        pixelplanes.storage("audio")


@pytest.mark.parametrize("choice", ["x264rgb_lossless", "ffv1"])
def test_lossless_choices_are_exact(choice):
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
    back = decode_mp4(encode_mp4(frames, 16, pixelplanes.storage("flow", choice)))
    np.testing.assert_array_equal(back, frames)
