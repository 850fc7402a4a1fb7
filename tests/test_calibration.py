"""`postwatch calibrate frame|check` and the site-file errors a person meets while writing one.

The commands run through a throwaway app that mounts `calibrate_app` the way service/cli.py does, under
typer's CliRunner. Pictures are checked against the raw frame: drawn pixels differ, the rest are equal
(PNG is lossless). The demo clip is built into a temporary folder; the chair clip needs ../shared.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
import yaml
from conftest import ROOT, media_path
from typer.testing import CliRunner, Result

from calibration.cli import calibrate_app, grab_frame
from calibration.render import facing_arrows, floor_grid, render_camera
from calibration.site import Camera, SiteError, load_site
from vision.demo import make_demo_clip

CHAIR = "A_effiscan_person_chair_sit_stand_leave_upright.mp4"
CHAIR_ROTATED = "A_effiscan_person_chair_sit_stand_leave.mp4"  # stored sideways with a rotation tag
EXAMPLES = ROOT / "examples"

app = typer.Typer(name="postwatch", add_completion=False, pretty_exceptions_enable=False)
app.add_typer(calibrate_app, name="calibrate")


@app.command()
def version() -> None:
    """A second command, so `calibrate` stays a group as it is under the real app."""


def postwatch(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_clear_line(res: Result, *needles: str) -> str:
    """Exit 2 with one `postwatch: ...` line on stderr naming every needle, and no traceback."""
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert isinstance(res.exception, SystemExit), res.exception
    err = res.stderr.strip()
    assert err.startswith("postwatch: ") and "\n" not in err, err
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in err, err
    return err


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel: does the drawing differ from the raw frame?"""
    return np.any(a != b, axis=2)


def polygon_mask(shape: tuple[int, ...], polygon: list, grow: int = 0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.array(polygon)).astype(np.int32)], 1)
    if grow > 0:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    elif grow < 0:
        mask = cv2.erode(mask, np.ones((-2 * grow + 1, -2 * grow + 1), np.uint8))
    return mask.astype(bool)


def write_site(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_clip(tmp_path_factory.mktemp("demo") / "demo.mp4")


@pytest.fixture()
def demo_site(tmp_path: Path, demo_clip: Path) -> Path:
    """examples/demo.yaml with its camera pointed at the clip built for this run."""
    data = yaml.safe_load((EXAMPLES / "demo.yaml").read_text(encoding="utf-8"))
    data["cameras"][0]["source"] = str(demo_clip)
    return write_site(tmp_path / "demo.yaml", data)


# ------------------------------------------------------------------------------------------ check


def test_check_chair_clip_tints_its_zone_and_leaves_the_rest(tmp_path: Path):
    clip = media_path(CHAIR)
    res = postwatch("calibrate", "check", EXAMPLES / "chair_clip.yaml", "--out", tmp_path)
    assert res.exit_code == 0, res.stderr
    png = tmp_path / "chair.png"
    assert res.stdout.split() == [str(png)]
    drawn, raw = read_png(png), grab_frame(str(clip)).image
    assert drawn.shape == raw.shape == (848, 480, 3)  # the upright frame
    diff = changed(drawn, raw)
    zone = load_site(EXAMPLES / "chair_clip.yaml").cameras[0].zones[0].polygon
    inside = polygon_mask(raw.shape, zone, grow=-3)
    assert diff[inside].mean() > 0.99  # tinted all over
    far = ~polygon_mask(raw.shape, zone, grow=6)
    far[:40] = False  # the caption in the top-left corner
    assert not diff[far].any()


def test_check_demo_site_draws_zone_door_arrow_and_floor_grid(
    demo_site: Path, demo_clip: Path, tmp_path: Path
):
    out = tmp_path / "pictures"
    res = postwatch("calibrate", "check", demo_site, "--out", out)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == [str(out / "front.png")]
    drawn, raw = read_png(out / "front.png"), grab_frame(str(demo_clip)).image
    assert drawn.shape == raw.shape == (720, 540, 3)
    diff = changed(drawn, raw)
    camera = load_site(demo_site).cameras[0]

    post = camera.zone("desk-post")
    assert post.kind == "post" and post.role == "front_desk"
    assert diff[polygon_mask(raw.shape, post.polygon, grow=-3)].mean() > 0.99
    assert not diff[250:330, 300:520].any()  # the bus's side, far from every drawing

    # The door ring around the door point.
    x, y = camera.door.point
    ring = [(round(x + 10 * math.cos(a)), round(y + 10 * math.sin(a))) for a in np.linspace(0, 2 * np.pi, 24)]
    ring = [(u, v) for u, v in ring if 0 <= u < 540 and 0 <= v < 720]
    assert np.mean([diff[v, u] for u, v in ring]) > 0.9

    # The arrow: its part below the post zone, where nothing else is drawn.
    (x0, y0), (x1, y1) = facing_arrows(camera, length=0.18 * 540)[0]
    along = [(round(x0 + f * (x1 - x0)), round(y0 + f * (y1 - y0))) for f in np.linspace(0.6, 0.9, 10)]
    assert all(not post.contains((u, v)) for u, v in along)
    assert all(diff[v, u] for u, v in along)

    # The floor grid: the lines 3 m and 4 m away (above both zones) are drawn, the cells between are not.
    inverse = np.linalg.inv(camera.floor.matrix())

    def to_image(points: list[tuple[float, float]]) -> np.ndarray:
        return cv2.perspectiveTransform(np.array([points], np.float64), inverse)[0]

    on_lines = to_image([(fx, fy) for fy in (3.0, 4.0) for fx in np.linspace(-0.5, 2.5, 25)])
    on_lines = [(round(u), round(v)) for u, v in on_lines if 0 <= u < 540 and 0 <= v < 720]
    assert len(on_lines) > 30
    assert np.mean([diff[v, u] for u, v in on_lines]) > 0.9
    cells = to_image([(0.5, 3.5), (1.5, 3.5)])
    assert not any(diff[round(v), round(u)] for u, v in cells)


def test_check_demo_example_as_written_builds_the_clip(tmp_path: Path):
    res = postwatch("calibrate", "check", EXAMPLES / "demo.yaml", "--out", tmp_path)
    assert res.exit_code == 0, res.stderr
    assert read_png(tmp_path / "front.png").shape == (720, 540, 3)


def test_check_writes_beside_the_site_file_by_default(tmp_path: Path, demo_clip: Path):
    site = write_site(tmp_path / "site.yaml", {"cameras": [{"id": "lobby/1", "source": str(demo_clip)}]})
    res = postwatch("calibrate", "check", site)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "check" / "lobby_1.png").is_file()  # a camera id made safe as a file name


def test_check_renders_the_cameras_it_can_and_fails_for_the_rest(tmp_path: Path, demo_clip: Path):
    site = write_site(
        tmp_path / "site.yaml",
        {
            "cameras": [
                {"id": "gone", "source": "missing.mp4"},
                {"id": "front", "source": str(demo_clip)},
                {"id": "wrong-size", "source": str(demo_clip), "frame_size": [640, 480]},
            ]
        },
    )
    res = postwatch("calibrate", "check", site, "--out", tmp_path / "out")
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert res.stdout.split() == [str(tmp_path / "out" / n) for n in ("front.png", "wrong-size.png")]
    lines = res.stderr.strip().splitlines()
    assert (
        lines[0]
        == f"postwatch: camera 'gone': Cannot open '{tmp_path / 'missing.mp4'}': no such file or folder."
    )
    assert lines[1].startswith("postwatch: camera 'wrong-size': frame_size says 640x480")
    assert "frames are 540x720" in lines[1]
    assert lines[2] == "postwatch: 2 of 3 camera(s) have problems; see above."
    assert "Traceback" not in res.output


# ------------------------------------------------------------------------------------------ render


def test_facing_arrow_follows_body_yaw():
    """Down the image = facing the camera (0), right = turned to the person's left (+90), up = 180."""

    def tip(yaw: float, zones: bool = True) -> tuple[float, float]:
        camera = Camera(
            id="c",
            source="x.mp4",
            zones=[
                {
                    "name": "p",
                    "kind": "post",
                    "role": "front_desk",
                    "polygon": [[0, 0], [20, 0], [20, 20], [0, 20]],
                }
            ]
            if zones
            else [],
            door={"point": [300, 200], "facing_yaw_deg": yaw},
        )
        ((x0, y0), (x1, y1)) = facing_arrows(camera, length=100)[0]
        assert (x0, y0) == ((10, 10) if zones else (300, 200))  # from the post, or the door without one
        return round(x1 - x0, 6), round(y1 - y0, 6)

    assert tip(0) == (0, 100)
    assert tip(90) == (100, 0)
    assert tip(-90) == (-100, 0)
    assert tip(180) == (0, -100)
    assert tip(0, zones=False) == (0, 100)
    assert facing_arrows(Camera(id="c", source="x.mp4"), length=100) == []


def distance_to_polyline(point: tuple[float, float], line: list[tuple[float, float]]) -> float:
    p, pts = np.array(point), np.array(line)
    a, b = pts[:-1], pts[1:]
    t = np.clip(
        np.einsum("ij,ij->i", p - a, b - a) / np.maximum(np.einsum("ij,ij->i", b - a, b - a), 1e-12), 0, 1
    )
    return float(np.min(np.linalg.norm(a + t[:, None] * (b - a) - p, axis=1)))


def test_floor_grid_passes_through_the_calibration_points_and_stops_before_the_horizon():
    floor = load_site(EXAMPLES / "demo.yaml").cameras[0].floor
    lines = floor_grid(floor, 540, 720)
    for x, y in floor.image:  # each is the crossing of two whole-metre lines
        near = sorted(distance_to_polyline((x, y), line) for line in lines)
        assert near[1] < 0.5, (x, y, near[:3])
    horizon_y = 290  # where the demo floor's lines meet
    visible = [(u, v) for line in lines for u, v in line if 0 <= u < 540]
    assert min(v for _, v in visible) > horizon_y + 40  # no solid band of lines at the horizon


def test_render_camera_leaves_the_input_alone():
    camera = Camera(
        id="c", source="x.mp4", zones=[{"name": "w", "kind": "work", "polygon": [[5, 5], [60, 5], [60, 60]]}]
    )
    image = np.full((100, 120, 3), 90, np.uint8)
    drawn = render_camera(camera, image)
    assert drawn.shape == image.shape and (image == 90).all() and (drawn != 90).any()


# ------------------------------------------------------------------------------------------ frame


def test_frame_writes_the_upright_frame_and_at_moves_in_time(tmp_path: Path):
    clip = media_path(CHAIR_ROTATED)
    first, later = tmp_path / "first.png", tmp_path / "sub" / "later.png"
    res = postwatch("calibrate", "frame", clip, "--out", first)
    assert res.exit_code == 0, res.stderr
    assert "480x848" in res.stdout and "frame_size: [480, 848]" in res.stdout
    res = postwatch("calibrate", "frame", clip, "--out", later, "--at", "5")
    assert res.exit_code == 0, res.stderr
    assert "at 5.0" in res.stdout
    a, b = read_png(first), read_png(later)
    assert a.shape == b.shape == (848, 480, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2.0  # the person moved in five seconds
    upright = grab_frame(str(media_path(CHAIR))).image.astype(int)  # the same clip, re-encoded upright
    assert np.abs(a.astype(int) - upright).mean() < 5 < np.abs(a.astype(int) - upright[::-1, ::-1]).mean()


def test_frame_of_the_demo(tmp_path: Path):
    res = postwatch("calibrate", "frame", "demo", "--out", tmp_path / "demo.png", "--at", "2.5")
    assert res.exit_code == 0, res.stderr
    assert read_png(tmp_path / "demo.png").shape == (720, 540, 3)


@pytest.mark.parametrize(
    ("source", "out", "at", "needles"),
    [
        ("missing.mp4", "frame.png", "0", ["Cannot open 'missing.mp4': no such file or folder."]),
        ("{clip}", "frame.png", "60", ["at 60 s", "its last frame is at 7.90 s"]),
        ("{clip}", "frame.txt", "0", ["frame.txt': give an image file name", ".png"]),
    ],
)
def test_frame_errors_are_one_line(
    tmp_path: Path, demo_clip: Path, source: str, out: str, at: str, needles: list[str]
):
    source = source.replace("{clip}", str(demo_clip))
    res = postwatch("calibrate", "frame", source, "--out", tmp_path / out, "--at", at)
    assert_one_clear_line(res, *needles)
    assert not (tmp_path / out).exists()


# ------------------------------------------------------------------------------------------ site errors

ZONE = {
    "name": "desk",
    "kind": "post",
    "role": "front_desk",
    "polygon": [[100, 560], [380, 560], [400, 848], [80, 848]],
}


def site_with(zone: dict | None = None, **top: object) -> dict:
    camera = {"id": "cam", "source": "clip.mp4", "frame_size": [480, 848], "zones": [zone or ZONE]}
    return {"cameras": [camera], **top}


BAD_SITES = {
    "zone outside the frame": (
        site_with({**ZONE, "polygon": [[100, 560], [380, 560], [500, 900], [80, 848]]}),
        ["cameras.0", "zone 'desk'", "outside the 480x848 frame", "(500, 900)"],
    ),
    "unknown role": (
        site_with({**ZONE, "role": "astronaut"}),
        ["zone 'desk'", "unknown role 'astronaut'", "front_desk"],
    ),
    "bow-tie polygon": (
        site_with({**ZONE, "polygon": [[100, 560], [380, 848], [380, 560], [100, 848]]}),
        ["cameras.0.zones.0.polygon", "self-intersecting"],
    ),
    "unknown clause parameter": (
        site_with(clauses={"d1.reception.02": {"bogus_s": 3}}),
        ["clauses.d1.reception.02.bogus_s", "unknown parameter 'bogus_s'", "empty_s"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SITES))
def test_bad_site_files_are_rejected_naming_the_key(tmp_path: Path, case: str):
    data, needles = BAD_SITES[case]
    site = write_site(tmp_path / "site.yaml", data)
    with pytest.raises(SiteError) as caught:
        load_site(site)
    for needle in needles:
        assert needle in str(caught.value)
    err = assert_one_clear_line(postwatch("calibrate", "check", site, "--out", tmp_path / "out"), *needles)
    assert str(site) in err
    assert not (tmp_path / "out").exists()


def test_missing_site_file(tmp_path: Path):
    site = tmp_path / "nope.yaml"
    with pytest.raises(SiteError, match="Cannot read site file .*nope.yaml: No such file"):
        load_site(site)
    assert_one_clear_line(
        postwatch("calibrate", "check", site), f"Cannot read site file {site}", "No such file"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path):
    site = tmp_path / "broken.yaml"
    site.write_text("cameras: [\n  - id: cam\n", encoding="utf-8")
    with pytest.raises(SiteError, match="not valid YAML"):
        load_site(site)
    assert_one_clear_line(
        postwatch("calibrate", "check", site), f"Site file {site} is not valid YAML: line 2, column 3:"
    )


def test_approval_for_an_unknown_post_is_one_line(tmp_path: Path):
    approval = {"camera": "cam", "post": "nope", "start": "2024-05-01T10:00:00", "end": "2024-05-01T11:00:00"}
    site = write_site(tmp_path / "site.yaml", site_with(approvals=[approval]))
    assert_one_clear_line(
        postwatch("calibrate", "check", site), "approval for camera 'cam' names unknown post 'nope'"
    )


def test_calibrate_help_lists_its_commands():
    res = postwatch("calibrate", "--help")
    assert res.exit_code == 0
    assert "frame" in res.stdout and "check" in res.stdout
