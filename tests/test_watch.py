"""`vilt-edge watch` on a video the test writes with OpenCV, a folder of frames, and a live
capture that drops frames rather than fall behind."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.runtime import ViltRuntime
from vilt_edge.watch import live_source, open_source, watch

QUESTION = "what color is the shape?"
FPS = 10


def shape_frame(rgb: tuple[int, int, int], size: int = 96) -> np.ndarray:
    """An easy-VQA-like frame: a filled circle on white, as BGR for OpenCV."""
    frame = np.full((size, size, 3), 255, np.uint8)
    cv2.circle(frame, (size // 2, size // 2), size // 3, rgb[::-1], thickness=-1)
    return frame


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """3 s at 10 fps: a red circle for 1.5 s, then a blue one."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (96, 96))
    assert writer.isOpened()
    for index in range(3 * FPS):
        writer.write(shape_frame((220, 20, 20) if index < 15 else (20, 20, 220)))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame[:, :, ::-1].copy())


def test_watch_a_video_answers_as_ask_on_its_rgb_frames(video):
    result = CliRunner().invoke(
        app, ["watch", "default", "--video", str(video), "-q", QUESTION, "--every", "0.5",
              "--json", "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["time_s"] for r in records] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [r["frame"] for r in records] == [0, 5, 10, 15, 20, 25]
    runtime = ViltRuntime.load("default", threads=1)
    frames = decoded_frames(video)
    for record in records:
        want = runtime.ask(frames[record["frame"]], QUESTION, top_k=1)[0]
        assert record["answer"] == want.answer and abs(record["score"] - want.score) < 1e-6
    # BGR was converted: red first, blue after (swapped channels would answer the reverse).
    assert records[0]["answer"] == "red" and records[-1]["answer"] == "blue"
    assert "watched 6 frame(s)" in result.stderr and "dropped 0 frame(s)" in result.stderr


def test_watch_several_questions_and_a_folder_of_frames(tmp_path):
    for index, color in enumerate([(220, 20, 20), (20, 160, 20), (20, 20, 220)]):
        cv2.imwrite(str(tmp_path / f"f{index:02d}.png"), shape_frame(color))
    result = CliRunner().invoke(
        app, ["watch", "default", "--frames", str(tmp_path), "-q", QUESTION,
              "-q", "what shape is in the image?", "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and "'what shape is in the image?': circle" in lines[1]
    assert [line.split("frame")[1].split()[0] for line in lines[::2]] == ["0", "1", "2"]


class SlowCamera:
    """A capture that delivers frames at `fps` like a live camera (from a list)."""

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        self.frames, self.interval, self.index = frames, 1 / fps, 0

    def read(self):
        if self.index >= len(self.frames):
            return False, None
        time.sleep(self.interval)
        self.index += 1
        return True, self.frames[self.index - 1]

    def release(self) -> None:
        pass


def test_a_live_source_drops_frames_rather_than_fall_behind():
    frames = [shape_frame((220, 20, 20))] * 40
    runtime = ViltRuntime.load("default", threads=1)
    records = []

    def slow_emit(record):
        records.append(record)
        time.sleep(0.05)  # a consumer slower than the camera's 100 frames/s

    with live_source(SlowCamera(frames, fps=100), "fake camera", every=0.02) as source:
        summary = watch(runtime, source, [QUESTION], slow_emit)
    assert summary["dropped"] > 0 and summary["frames"] + summary["dropped"] <= 40
    assert summary["frames"] == len(records) and summary["frames"] < 40
    indices = [r["frame"] for r in records]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)


def test_bad_watch_inputs_are_one_line(video, tmp_path):
    runner = CliRunner()
    base = ["watch", "default", "-q", QUESTION]
    one_line_error(runner.invoke(app, base), 2, "exactly one of --video")
    one_line_error(runner.invoke(app, [*base, "--video", str(video), "--frames", str(tmp_path)]),
                   2, "exactly one of")  # fmt: skip
    one_line_error(runner.invoke(app, [*base, "--video", str(tmp_path / "none.mp4")]), 2,
                   "video file not found")  # fmt: skip
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    one_line_error(runner.invoke(app, [*base, "--video", str(broken)]), 2, "cannot open")
    one_line_error(runner.invoke(app, [*base, "--frames", str(tmp_path / "empty")]), 2,
                   "not a folder")  # fmt: skip
    one_line_error(runner.invoke(app, [*base, "--video", str(video), "--every", "0"]), 2,
                   "--every")  # fmt: skip
    result = runner.invoke(app, ["watch", "default", "-q", " ", "--video", str(video)])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_open_source_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(Exception, match="no image files"):
        open_source(frames=tmp_path)
