"""`vilt-edge watch`: questions asked of a video, a camera or a folder of frames (OpenCV, the
`watch` extra), one answer line (or JSON object) per sampled frame and question.

    from vilt_edge.watch import open_source, watch
    with open_source(video="drive.mp4", every=0.5) as frames:
        summary = watch(runtime, frames, ["is the road clear?"], emit=print)

A video file is sampled every `every` seconds of its own time (frames in between are skipped
with `grab`, not decoded); nothing is dropped, since a file waits for us. A camera is live: a
reader thread keeps only the newest frame, and the watcher takes one every `every` seconds of
wall time; frames that arrive while the model is busy are dropped, not queued, and counted,
so answers never fall behind the camera. A folder's images are frames in name order, `every`
seconds apart. OpenCV decodes to BGR; frames are converted to RGB before the model sees them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Frame:
    time_s: float
    index: int
    rgb: np.ndarray


@dataclass
class FrameSource:
    """Frames to ask about; `dropped` counts those a live source skipped."""

    name: str
    live: bool
    frames: Iterator[Frame]
    dropped: int = 0
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError(
            "watch needs OpenCV: pip install 'vilt-edge[watch]' (opencv-python-headless)"
        ) from None
    return cv2


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[:, :, ::-1])  # OpenCV's BGR -> RGB


def open_source(
    video: str | Path | None = None,
    camera: int | None = None,
    frames: str | Path | None = None,
    every: float = 1.0,
) -> FrameSource:
    """Exactly one of `video`, `camera` or `frames`; one line naming what cannot be opened."""
    given = [s for s in (video, camera, frames) if s is not None]
    if len(given) != 1:
        raise InputError("give exactly one of --video FILE, --camera N or --frames DIR")
    if not every > 0:
        raise InputError(f"--every must be a positive number of seconds; got {every}")
    if frames is not None:
        return _folder(Path(frames), every)
    cv2 = _cv2()
    if video is not None:
        path = Path(video)
        if not path.is_file():
            raise InputError(f"{path}: video file not found")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise InputError(f"{path}: OpenCV cannot open this video")
        return _video(capture, str(path), every)
    capture = cv2.VideoCapture(int(camera))
    if not capture.isOpened():
        raise InputError(f"camera {camera}: OpenCV cannot open it")
    return live_source(capture, f"camera {camera}", every)


def _folder(folder: Path, every: float) -> FrameSource:
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of frames")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")

    def frames() -> Iterator[Frame]:
        from vilt_edge.preprocess import load_image

        for index, path in enumerate(paths):
            yield Frame(index * every, index, np.asarray(load_image(path)))

    return FrameSource(str(folder), False, frames())


def _video(capture: Any, name: str, every: float) -> FrameSource:
    cv2 = _cv2()
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    if not fps > 0:
        fps = 30.0  # a stream without a rate: assume the common one

    def frames() -> Iterator[Frame]:
        index, next_time = 0, 0.0
        while True:
            time_s = index / fps
            if time_s + 1e-9 >= next_time:
                ok, frame = capture.read()
                if not ok:
                    return
                yield Frame(time_s, index, _rgb(frame))
                next_time += every
            elif not capture.grab():  # skipped: not decoded
                return
            index += 1

    return FrameSource(name, False, frames(), _close=capture.release)


def live_source(capture: Any, name: str, every: float) -> FrameSource:
    """A live capture: a reader thread keeps the newest frame; older unread ones are dropped."""
    state: dict[str, Any] = {"frame": None, "index": -1, "taken": -1, "done": False}
    lock = threading.Condition()
    source = FrameSource(name, True, iter(()))

    def read() -> None:
        index = 0
        while not state["done"]:
            ok, frame = capture.read()
            with lock:
                if not ok:
                    state["done"] = True
                elif state["frame"] is not None and state["index"] > state["taken"]:
                    source.dropped += 1  # the newer frame replaces one nobody asked about
                if ok:
                    state["frame"], state["index"] = frame, index
                lock.notify_all()
            index += 1

    reader = threading.Thread(target=read, name="vilt-edge-camera", daemon=True)
    started = time.monotonic()

    def frames() -> Iterator[Frame]:
        reader.start()
        next_time = 0.0
        while True:
            with lock:
                lock.wait_for(lambda: state["index"] > state["taken"] or state["done"])
                if state["index"] <= state["taken"]:
                    return
                frame, index = state["frame"], state["index"]
                state["taken"] = index
            yield Frame(time.monotonic() - started, index, _rgb(frame))
            next_time += every
            pause = next_time - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)

    def close() -> None:
        state["done"] = True
        if reader.is_alive():
            reader.join(timeout=2)
        capture.release()

    source.frames, source._close = frames(), close
    return source


def watch(
    runtime,
    source: FrameSource,
    questions: list[str],
    emit: Callable[[dict[str, Any]], None],
    top_k: int = 1,
    limit: int | None = None,
) -> dict[str, Any]:
    """Ask every question of every frame `source` yields; `emit` gets one record per frame and
    question; returns the summary (frames asked, dropped, answers, latency)."""
    questions = [q for q in questions]
    if not questions:
        raise InputError("give at least one --question")
    asked, latencies = 0, []
    for frame in source:
        answers = runtime.ask_batch([frame.rgb] * len(questions), questions, top_k=top_k)
        latency = runtime.last_latency_ms["total"]
        latencies.append(latency)
        for question, answer in zip(questions, answers, strict=True):
            emit({"time_s": round(frame.time_s, 3), "frame": frame.index, "question": question,
                  "answer": answer[0].answer, "score": round(answer[0].score, 6),
                  "answers": [a.to_json() for a in answer],
                  "latency_ms": round(latency, 3)})  # fmt: skip
        asked += 1
        if limit is not None and asked >= limit:
            break
    return {
        "source": source.name,
        "frames": asked,
        "dropped": source.dropped,
        "questions": len(questions),
        "latency_ms_p50": round(float(np.median(latencies)), 3) if latencies else None,
    }
