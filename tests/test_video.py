"""``ssdlib demo --video``: a short moving-Shapes video the test writes goes through the CLI;
same frame count, size and rate out; the boxes drawn on a frame are ``predict``'s on that
frame; bad input is a one-line error and leaves nothing under the --out name."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from ssdlib.cli import main
from ssdlib.config import load_config
from ssdlib.data.shapes import render_shapes
from ssdlib.engine.inference import detect_images
from ssdlib.model import build_model
from ssdlib.viz.draw import draw_detections

av = pytest.importorskip("av")

from ssdlib.engine.video import open_video  # noqa: E402

FRAMES, SIZE, RATE = 30, (96, 128), Fraction(25, 2)  # frames, (height, width), frames/s


@pytest.fixture(autouse=True)
def one_torch_thread(one_thread):
    yield


def write_video(path, frames=FRAMES, rate=RATE):
    """Moving Shapes: a rendered scene shifted 3 px per frame."""
    h, w = SIZE
    scene = np.concatenate([render_shapes(0, 1, 96).image, render_shapes(0, 2, 96).image], axis=1)
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"crf": "10"}
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(scene, 3 * i, axis=1)[:h, :w]),
                                           format="rgb24")  # fmt: skip
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def decoded(path) -> tuple[list[np.ndarray], Fraction]:
    source = open_video(path)
    frames, rate = list(source.frames()), source.rate
    source.close()
    return frames, rate


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(load_config("shapes")).eval()
    path = tmp_path_factory.mktemp("video") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return model, path


def test_video_through_the_cli(checkpoint, tmp_path, capsys):
    model, ckpt = checkpoint
    cfg = load_config("shapes")
    video = write_video(tmp_path / "in.mp4")
    frames_in, rate_in = decoded(video)
    assert len(frames_in) == FRAMES and rate_in == RATE
    # A threshold that leaves the 3 best boxes of frame k: a picture where boxes can be seen.
    k = 17
    frame_k = torch.from_numpy(frames_in[k]).permute(2, 0, 1)
    args = (160, cfg.input.pixel_mean, cfg.input.pixel_std)
    best = detect_images(model, [frame_k], *args, score_threshold=0.01)[0].scores
    threshold = float(best[3] + best[2]) / 2

    out = tmp_path / "out" / "annotated.mp4"
    assert main(["demo", "--ckpt", str(ckpt), "--video", str(video), "--out", str(out),
                 "--score-threshold", f"{threshold}", "--batch-size", "4"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert f"{FRAMES} frames in" in err and "frames/s on average" in err and "frame/s" in err
    frames_out, rate_out = decoded(out)
    assert len(frames_out) == FRAMES and rate_out == RATE
    assert frames_out[0].shape == (*SIZE, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotated.mp4"]  # no temporary left

    # Frame k of the output is frame k with predict's boxes drawn (up to H.264's loss), not
    # frame k alone nor frame k with another frame's boxes.
    det = detect_images(model, [frame_k], *args, score_threshold=threshold)[0]
    assert len(det) == 3
    expected = np.asarray(draw_detections(frames_in[k], det.boxes, det.labels, det.scores,
                                          list(cfg.data.class_names)), dtype=np.float32)  # fmt: skip
    other = detect_images(model, [torch.from_numpy(frames_in[2]).permute(2, 0, 1)], *args,
                          score_threshold=threshold)[0]  # fmt: skip
    wrong = np.asarray(draw_detections(frames_in[k], other.boxes, other.labels, other.scores,
                                       list(cfg.data.class_names)), dtype=np.float32)  # fmt: skip
    got = frames_out[k].astype(np.float32)
    drawn = np.abs(expected - frames_in[k]).max(axis=-1) > 60  # pixels of boxes and captions
    assert drawn.sum() > 100
    err_expected = np.abs(got - expected)[drawn].mean()
    assert err_expected < 0.3 * np.abs(got - frames_in[k])[drawn].mean()
    drawn_wrong = drawn | (np.abs(wrong - frames_in[k]).max(axis=-1) > 60)
    assert err_expected < 0.5 * np.abs(got - wrong)[drawn_wrong].mean()


def test_bad_video_input_is_a_clear_error_and_writes_nothing(checkpoint, tmp_path, capsys):
    _, ckpt = checkpoint
    good = write_video(tmp_path / "good.mp4", frames=8)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    out.write_bytes(b"previous result")  # an earlier output under --out is not clobbered
    for bad in (truncated, text, tmp_path / "missing.mp4"):
        code = main(["demo", "--ckpt", str(ckpt), "--video", str(bad), "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith(f"error: --video {bad}"), err
        assert len(err.strip().splitlines()) == 1
        assert out.read_bytes() == b"previous result"
        assert sorted(p.name for p in out.parent.iterdir()) == ["result.mp4"]
    code = main(["demo", "--ckpt", str(ckpt), "--video", str(good), "--out", str(tmp_path / "x.gif")])
    assert code == 1 and "expected a video file name ending in .mp4" in capsys.readouterr().err
    code = main(["demo", "--ckpt", str(ckpt), "--camera", "97", "--out", str(tmp_path / "cam.mp4")])
    assert code == 1 and "error: --camera 97: no such device /dev/video97" in capsys.readouterr().err
