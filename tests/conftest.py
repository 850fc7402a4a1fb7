"""Shared fixtures: where the real media lives, and one loaded pipeline for the whole run."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
SHARED_MODEL = SHARED / "models" / "yolov8n_int8.tflite"
NO_MEDIA = "../shared/media not found: real-media tests need the shared folder beside the checkout"

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("YOLO_VERBOSE", "False")


def media_path(name: str) -> Path:
    """The path of a file in ../shared/media, skipping the test where it is absent."""
    path = MEDIA / name
    if not path.exists():
        pytest.skip(NO_MEDIA if not MEDIA.exists() else f"{name} not in ../shared/media")
    return path


def weights() -> str:
    """Detector weights for tests: the resolution order, else the shared model."""
    from vision.detect import WeightsError, resolve_weights

    try:
        found = resolve_weights(None)
    except WeightsError as exc:
        pytest.skip(str(exc))
    if found != "yolov8n.pt":
        return found
    if SHARED_MODEL.exists():
        return str(SHARED_MODEL)
    pytest.skip(
        "no detector weights: put yolov8n.pt or yolov8n_int8.tflite in models/ or set POSTWATCH_WEIGHTS"
    )


@lru_cache(maxsize=1)
def _pipeline_models():
    from vision.detect import Detector
    from vision.pose import PoseEstimator

    return Detector(weights()), PoseEstimator()


def make_pipeline(fps: float = 5.0, track: bool = True):
    """A Pipeline around the models loaded once for the whole test run."""
    from vision.pipeline import Pipeline, PipelineOptions

    detector, pose = _pipeline_models()
    return Pipeline(detector, pose, PipelineOptions(fps=fps), track=track)


@lru_cache(maxsize=64)
def observe_image(path: str):
    """FrameObservation of one photo (persons numbered left to right), cached across tests."""
    from vision.sources import open_source

    with open_source(path, camera="test") as source:
        frame = next(iter(source))
    return make_pipeline(track=False).process(frame)


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    return MEDIA


@pytest.fixture(params=("sqlite", "postgresql"))
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A scratch database of each backend: a SQLite file, and a fresh schema on the PostgreSQL
    server every development and CI machine runs (skipped with the reason if it is unreachable)."""
    from contextlib import ExitStack

    from service.testing import DatabaseUnavailable, scratch_database

    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(request.param, tmp_path))
        except DatabaseUnavailable as exc:
            pytest.skip(str(exc))
        yield url
