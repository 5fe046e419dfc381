"""DensePose R-CNN on torchvision parts: detectron2 key mapping, checkpoint reading, IUV
compositing, and the annotator end to end with tiny random weights in a temp model cache."""

import os
import pickle

import numpy as np
import pytest
import torch
from tests.tiny_humans import person_clip

from annotators import get_annotator
from annotators.densepose import DensePoseAnnotator, paste_iuv
from annotators.densepose_rcnn import (DensePoseArch, DensePoseRCNN, detectron2_to_torchvision,
                                       load_densepose_rcnn, read_detectron2_checkpoint)
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.random_models import write_random_model
from openuni_builder.tiny_models import detectron2_densepose_state, tiny_densepose_state


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    return tmp_path


@pytest.fixture(scope="module")
def d2_state():
    return tiny_densepose_state()  # what write_random_model('densepose-r50-fpn') writes


def make_clip(frames):
    spec = ClipSpec(num_frames=len(frames), fps=8, height=frames.shape[1], width=frames.shape[2])
    return Clip(request=ClipRequest(source="test", video_id="v", path="v.mp4"), spec=spec, frames=frames)


def test_arch_read_from_checkpoint(d2_state):
    arch = DensePoseArch.from_detectron2(d2_state)
    assert arch == DensePoseArch(stage_blocks=(1, 1, 1, 1), fpn_channels=16, head_convs=2, head_dim=16,
                                 coarse_channels=2)
    legacy = DensePoseArch.from_detectron2(detectron2_densepose_state(coarse=15, head_convs=3))
    assert legacy.coarse_channels == 15 and legacy.head_convs == 3
    with pytest.raises(ValueError, match="DensePose"):
        DensePoseArch.from_detectron2({"backbone.bottom_up.stem.conv1.weight": np.zeros(1)})


def test_default_arch_is_r50_fpn_s1x():
    model = DensePoseRCNN()
    body = model.backbone.body
    assert [len(getattr(body, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert len(model.head.convs) == 8 and model.head.convs[-1].out_channels == 512
    assert model.predictor.ann_index_lowres.out_channels == 2 and model.predictor.u_lowres.out_channels == 25
    # MSRA ResNet: the stride-2 of a stage sits in the first 1x1 conv, not the 3x3
    assert body.layer2[0].conv1.stride == (2, 2) and body.layer2[0].conv2.stride == (1, 1)
    out = model.predictor(torch.zeros(1, 512, 28, 28))
    assert out.fine_segm.shape == (1, 25, 112, 112)


def test_key_mapping_puts_every_detectron2_tensor_in_its_module(d2_state):
    model = DensePoseRCNN(DensePoseArch.from_detectron2(d2_state))
    renamed, skipped = detectron2_to_torchvision(d2_state)
    assert sorted(skipped) == sorted(k for k in d2_state if k.startswith(("proposal_generator", "roi_heads.box_")))
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    assert missing == [] and unexpected == []
    body, fpn = model.backbone.body, model.backbone.fpn
    where = {  # detectron2 name -> the module of ours that must hold it
        "backbone.bottom_up.stem.conv1.weight": body.conv1.weight,
        "backbone.bottom_up.stem.conv1.norm.running_var": body.bn1.running_var,
        "backbone.bottom_up.res2.0.conv3.weight": body.layer1[0].conv3.weight,
        "backbone.bottom_up.res3.0.conv1.norm.bias": body.layer2[0].bn1.bias,
        "backbone.bottom_up.res4.0.shortcut.weight": body.layer3[0].downsample[0].weight,
        "backbone.bottom_up.res5.0.shortcut.norm.running_mean": body.layer4[0].downsample[1].running_mean,
        "backbone.fpn_lateral2.weight": fpn.inner_blocks[0][0].weight,
        "backbone.fpn_lateral5.bias": fpn.inner_blocks[3][0].bias,
        "backbone.fpn_output3.weight": fpn.layer_blocks[1][0].weight,
        "roi_heads.densepose_head.body_conv_fcn1.weight": model.head.convs[0].weight,
        "roi_heads.densepose_head.body_conv_fcn2.bias": model.head.convs[1].bias,
        "roi_heads.densepose_predictor.ann_index_lowres.weight": model.predictor.ann_index_lowres.weight,
        "roi_heads.densepose_predictor.v_lowres.bias": model.predictor.v_lowres.bias,
    }
    for name, tensor in where.items():
        np.testing.assert_array_equal(tensor.detach().numpy(), d2_state[name], err_msg=name)
    # the FPN lateral of res3 must take res3's 512 channels
    assert fpn.inner_blocks[1][0].in_channels == 512
    with pytest.raises(ValueError, match="unrecognised"):
        detectron2_to_torchvision({**d2_state, "roi_heads.densepose_head.ASPP.convs.0.0.weight": np.zeros(1)})


def test_checkpoint_reading_is_safe(tmp_path, d2_state):
    path = write_random_model("densepose-r50-fpn", cache=tmp_path) / "model_final_162be9.pkl"
    state = read_detectron2_checkpoint(path)
    assert state.keys() == d2_state.keys()
    model = load_densepose_rcnn(path)
    np.testing.assert_array_equal(model.head.convs[0].weight.detach().numpy(),
                                  d2_state["roi_heads.densepose_head.body_conv_fcn1.weight"])

    class Evil:
        def __reduce__(self):
            return os.system, ("echo pwned",)

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"x": Evil()}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_detectron2_checkpoint(evil)


def test_paste_composites_lower_box_over_upper():
    S = 8
    def outputs(part, u):
        coarse = torch.zeros(1, 2, S, S); coarse[:, 1] = 1  # all foreground
        fine = torch.zeros(1, 25, S, S); fine[:, part] = 1
        uu = torch.full((1, 25, S, S), u); vv = torch.full((1, 25, S, S), 0.5)
        return coarse, fine, uu, vv
    far, near = outputs(3, 0.2), outputs(7, 1.5)  # 1.5 clamps to 255
    boxes = torch.tensor([[2.0, 2.0, 12.0, 12.0], [8.0, 6.0, 18.0, 16.0]])  # second box reaches lower
    stacked = [torch.cat([a, b]) for a, b in zip(far, near)]
    iuv = paste_iuv(*stacked, boxes, 20, 24).numpy()
    assert iuv.shape == (20, 24, 3) and iuv.dtype == np.uint8
    assert tuple(iuv[3, 3]) == (3, 51, 127)  # far only: U = int(0.2 * 255), V = int(0.5 * 255)
    assert tuple(iuv[10, 10]) == (7, 255, 127)  # overlap: the lower (nearer) person wins
    assert tuple(iuv[0, 0]) == (0, 0, 0) and tuple(iuv[19, 23]) == (0, 0, 0)
    # same boxes given in the other order: same picture
    swapped = paste_iuv(*[t.flip(0) for t in stacked], boxes.flip(0), 20, 24).numpy()
    np.testing.assert_array_equal(swapped, iuv)
    # background coarse segmentation masks the part labels; boxes leaving the frame are clipped
    bg = outputs(3, 0.2); bg[0][:, 1] = -1
    assert not paste_iuv(*bg, torch.tensor([[0.0, 0, 10, 10]]), 12, 12).any()
    edge = paste_iuv(*far, torch.tensor([[-5.0, -5.0, 5.0, 5.0]]), 12, 12).numpy()
    assert edge[:5, :5, 0].min() == 3 and not edge[5:, :, 0].any()


def test_annotator_end_to_end(cache, d2_state):
    assert get_annotator("densepose") is DensePoseAnnotator
    assert "densepose-r50-fpn" in DensePoseAnnotator().unavailable()
    write_random_model("densepose-r50-fpn")
    assert "rtdetr-r50" in DensePoseAnnotator().unavailable()
    write_random_model("rtdetr-r50")
    ann = DensePoseAnnotator(detection_threshold=0.0, min_size=64, max_size=96, frame_batch_size=2)
    assert ann.unavailable() is None
    ann.load()
    frames = person_clip()
    out = ann.annotate([make_clip(frames)])[0]
    iuv = out.raw["iuv"]
    assert iuv.shape == (5, 48, 64, 3) and iuv.dtype == np.uint8
    assert 0 < iuv[..., 0].max() <= 24 and not iuv[iuv[..., 0] == 0].any()  # U, V only on the body
    assert out.meta["no_person"] is False and out.meta["person_count"] >= 1
    tracks = ann.detector.track(frames)
    for t in range(5):  # IUV only inside (integer) person boxes
        inside = np.zeros((48, 64), bool)
        for x0, y0, x1, y1 in tracks.boxes[t][tracks.present[t]]:
            inside[max(int(y0), 0):int(y0) + max(int(y1 - y0), 1), max(int(x0), 0):int(x0) + max(int(x1 - x0), 1)] = True
        assert not iuv[t][~inside].any()
    assert ann.provenance()["implementation"] == "torchvision-native"


def test_no_person_gives_zero_iuv_and_flag(cache, d2_state):
    write_random_model("densepose-r50-fpn")
    write_random_model("rtdetr-r50")
    ann = DensePoseAnnotator(detection_threshold=1.0, min_size=64)
    ann.load()
    out = ann.annotate([make_clip(person_clip())])[0]
    assert out.raw["iuv"].shape == (5, 48, 64, 3) and not out.raw["iuv"].any()
    assert out.meta["no_person"] is True


def test_bad_options():
    with pytest.raises(ValueError):
        DensePoseAnnotator(min_size=900, max_size=800)
    with pytest.raises(ValueError):
        DensePoseAnnotator(frame_batch_size=0)
