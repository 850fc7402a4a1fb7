"""`postwatch calibrate`: the commands that help a person make a site file.

`frame` grabs an upright frame from any source the project reads, to draw zones on in an image editor;
`check` draws a site file over each camera's own frame (see `calibration.render` for what is drawn), so
a wrong polygon, door or floor scale shows before any rule runs on it.

The lead mounts this with `app.add_typer(calibrate_app, name="calibrate")`. The commands print their
own one-line errors and exit 2 themselves (SystemExit passes through `service.cli.main`), so they behave
the same mounted or run alone, and under typer's CliRunner in the tests.

A camera source, or the SOURCE of `frame`, may be `demo`: the built-in demo clip
(`vision.demo.make_demo_clip`), written to a temporary folder for the command's duration.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:  # the heavy imports wait for a command, so mounting this costs `postwatch` nothing
    import numpy as np

    from calibration.site import Camera
    from vision.sources import Frame

DEMO = "demo"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

calibrate_app = typer.Typer(
    help=(
        "Make a site file: grab a frame to draw zones on (frame), then see the site file drawn over "
        "each camera's own frame (check)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit, never a traceback, mounted or not."""
    typer.echo(f"postwatch: {_one_line(message)}", err=True)
    sys.exit(code)


def _one_line(message: str) -> str:
    return re.sub(r"\s*\n\s*", " ", message.strip())


def _site_problem(path: Path, exc: Exception) -> str:
    """The message for a site file that does not load, on one line.

    PyYAML's own message spans several lines with a caret drawing; its line, column and problem say the
    same in one. A KeyError (an approval naming a post the camera lacks escapes `load_site` that way)
    is reported like a SiteError.
    """
    import yaml

    cause = exc.__cause__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
        mark = cause.problem_mark
        what = cause.problem or cause.context or "syntax error"
        return f"Site file {path} is not valid YAML: line {mark.line + 1}, column {mark.column + 1}: {what}"
    if isinstance(exc, KeyError) and exc.args:
        return f"{path}: {exc.args[0]}"
    return str(exc)


def is_demo_source(spec: str, site_file: Path | None = None) -> bool:
    """Whether `spec` names the built-in demo clip.

    `load_site` resolves relative sources against the site file's folder, so `source: demo` in a site
    file arrives as <site folder>/demo; that counts as the demo unless a real file or folder has the name.
    """
    if spec == DEMO:
        return True
    if site_file is None:
        return False
    path = Path(spec)
    return path == (site_file.parent / DEMO).resolve() and not path.exists()


class _DemoClip:
    """The demo clip, built once per command on first use, in a temporary folder removed afterwards."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._path: str | None = None

    def path(self) -> str:
        if self._path is None:
            from vision.demo import make_demo_clip

            self._tmp = tempfile.TemporaryDirectory(prefix="postwatch-demo-")
            self._path = str(make_demo_clip(Path(self._tmp.name) / "demo.mp4"))
        return self._path

    def __enter__(self) -> _DemoClip:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def grab_frame(spec: str, at: float = 0.0, camera: str = "calibrate", shown: str | None = None) -> Frame:
    """The first frame at or after `at` seconds of the source's own clock (wall-clock seconds since
    opening for a live source). Files are read in order, never seeked, as everywhere in postwatch."""
    from vision.sources import SourceError, open_source

    last_t: float | None = None
    with open_source(spec, camera=camera) as source:
        for frame in source:
            if frame.t >= at - 1e-6:
                return frame
            last_t = frame.t
    where = "it has no frames" if last_t is None else f"its last frame is at {last_t:.2f} s"
    raise SourceError(f"Cannot take a frame at {at:g} s of '{shown or spec}': {where}.")


def _write_image(path: Path, image: np.ndarray) -> None:
    import cv2

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"Cannot write '{path}': give an image file name ({', '.join(IMAGE_SUFFIXES)}).")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = cv2.imwrite(str(path), image)
    except (OSError, cv2.error) as exc:
        raise ValueError(f"Cannot write '{path}': {getattr(exc, 'strerror', None) or exc}") from exc
    if not ok:
        raise ValueError(f"Cannot write '{path}': OpenCV could not write the image there.")


def _file_name(camera_id: str) -> str:
    """A camera id as a file name: anything but letters, digits, dot, dash and underscore becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", camera_id).strip(".") or "camera"


@calibrate_app.command()
def frame(
    source: Annotated[
        str,
        typer.Argument(help="Video file, image, folder, rtsp:// or http:// URL, webcam index, or 'demo'."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Image file to write (.png, .jpg, ...).")],
    at: Annotated[
        float,
        typer.Option(
            "--at", min=0.0, help="Seconds into the source (a live source: seconds after it opens)."
        ),
    ] = 0.0,
) -> None:
    """Write one upright frame of SOURCE (the first, or the first at or after --at) to draw zones on."""
    from vision.sources import SourceError

    try:
        with _DemoClip() as demo:
            spec = demo.path() if is_demo_source(source) else source
            grabbed = grab_frame(spec, at, shown=source)
        _write_image(out, grabbed.image)
    except (SourceError, ValueError) as exc:
        _fail(str(exc))
    h, w = grabbed.image.shape[:2]
    typer.echo(f"{out}: {w}x{h} at {grabbed.t:.2f} s (frame {grabbed.index}); frame_size: [{w}, {h}]")


def _check_camera(camera: Camera, spec: str, out_dir: Path, at: float) -> tuple[Path, list[str]]:
    """Render one camera to out_dir/<id>.png; return the path and the config problems found on the frame."""
    from calibration.render import fit_problems, render_camera

    grabbed = grab_frame(spec, at, camera=camera.id, shown=camera.source)
    h, w = grabbed.image.shape[:2]
    caption = f"camera {camera.id}  {w}x{h}  t {grabbed.t:.2f} s"
    path = out_dir / f"{_file_name(camera.id)}.png"
    _write_image(path, render_camera(camera, grabbed.image, caption=caption))
    return path, fit_problems(camera, w, h)


CHECK_HELP = "\n\n".join(
    [
        "Draw the site file over a frame of each camera and write DIR/<camera>.png.",
        "Zones are filled in their kind's colour (post red, staff_only purple, standby orange, work blue, "
        "customer green) and labelled with name, kind, role and min staff. A floor scale adds its 1 m floor "
        "grid.",
        "The door is a magenta ring. The magenta arrow from each post shows facing_yaw_deg as the direction "
        "a person at the post faces when facing the door: down = facing the camera (0), right = turned to "
        "their left (+90), up = back to the camera (180). It should point roughly at the door.",
        "A camera whose source cannot be read, or whose zones, door or floor points do not fit its frames, "
        "gets one line on stderr; the others still render. Exits 2 if any camera had a problem.",
    ]
)


@calibrate_app.command(help=CHECK_HELP)
def check(
    site: Annotated[Path, typer.Argument(help="The site file (YAML) to check.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the pictures (default: the site file's folder/check)."),
    ] = None,
    at: Annotated[
        float, typer.Option("--at", min=0.0, help="Draw on the first frame at or after this many seconds.")
    ] = 0.0,
) -> None:
    """Draw the site file over each camera's frame. Help text: CHECK_HELP, kept as paragraphs for typer."""
    from calibration.site import SiteError, load_site
    from vision.sources import SourceError

    try:
        loaded = load_site(site)
    except (SiteError, KeyError) as exc:
        _fail(_site_problem(site, exc))
    out_dir = out if out is not None else site.parent / "check"
    failed = 0
    with _DemoClip() as demo:
        for camera in loaded.cameras:
            try:
                spec = demo.path() if is_demo_source(camera.source, site) else camera.source
                path, problems = _check_camera(camera, spec, out_dir, at)
            except (SourceError, ValueError) as exc:
                typer.echo(f"postwatch: camera {camera.id!r}: {_one_line(str(exc))}", err=True)
                failed += 1
                continue
            typer.echo(str(path))
            for problem in problems:
                typer.echo(f"postwatch: camera {camera.id!r}: {problem}", err=True)
            failed += bool(problems)
    if failed:
        _fail(f"{failed} of {len(loaded.cameras)} camera(s) have problems; see above.")


@calibrate_app.command()
def uniform(
    images: Annotated[
        list[Path], typer.Argument(help="Photos of staff in the uniform (largest person in each).")
    ],
    role: Annotated[
        str, typer.Option("--role", help="Role the uniform belongs to (front_desk, cashier, ...).")
    ],
    site: Annotated[Path, typer.Option("--site", help="Site file to write roles.<role>.uniform into.")],
    weights: Annotated[
        str | None, typer.Option(help="Detector weights (see README for the search order).")
    ] = None,
) -> None:
    """Enrol a role's uniform colours from a few photos and write them into the site file."""
    from calibration.site import SiteError, load_site
    from calibration.uniform import enroll_from_files, write_uniform
    from vision.detect import Detector, WeightsError
    from vision.pipeline import Pipeline
    from vision.pose import PoseEstimator
    from vision.sources import SourceError

    try:
        load_site(site)
        pipeline = Pipeline(Detector(weights), PoseEstimator(), camera="calibrate", track=False)
        enrolled = enroll_from_files(images, pipeline)
        write_uniform(site, role, enrolled)
    except (SiteError, SourceError, WeightsError, ValueError) as exc:
        _fail(str(exc))
    for p in images:
        if str(p) not in enrolled.images:
            typer.echo(f"postwatch: {p}: no person with a visible torso; left out", err=True)
    typer.echo(
        f"{site}: roles.{role}.uniform from {len(enrolled.images)} photo(s), "
        f"{len(enrolled.colours_lab)} colour(s), max_distance {enrolled.max_distance:g}"
    )
