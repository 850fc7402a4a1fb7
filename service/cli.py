"""The `postwatch` command line: inspect, analyze, clauses.

Every command drives the same vision → rules path (`vision.pipeline`,
`rules.engine`); none keeps its own copy. Errors a user can cause (a broken
video, missing weights, a bad parameter) end with one clear sentence and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from calibration.cli import calibrate_app
from service.evaluate import VIDEO_WEIGHTS_HELP, evaluate_command

app = typer.Typer(
    name="postwatch",
    help="Camera-based conduct monitor for front-desk staff and security guards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEMO = "demo"
EXIT_SOURCE_PROBLEMS = 3  # analysed what decoded, but the file lied about itself or was damaged
#: `serve --inference-threads`: one per CPU core up to two (docs/performance.md).
DEFAULT_INFERENCE_THREADS = max(1, min(2, os.cpu_count() or 1))

app.add_typer(calibrate_app, name="calibrate")
app.command("evaluate")(evaluate_command)


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _quiet_libraries() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _models(weights: str | None, fps: float, camera: str):  # noqa: ANN202 - a Pipeline
    from vision.detect import Detector
    from vision.pipeline import Pipeline, PipelineOptions
    from vision.pose import PoseEstimator

    detector = Detector(weights)
    return Pipeline(detector, PoseEstimator(), PipelineOptions(fps=fps), camera=camera)


def _load_overrides(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"Cannot read parameter overrides {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of clause id to parameters.")
    return data


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="A photo to look at.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    weights: Annotated[
        str | None, typer.Option(help="Detector weights (see README for the search order).")
    ] = None,
) -> None:
    """Run detection, pose and features on one image and print what the system believes, person by person."""
    from vision.sources import open_source

    with open_source(str(image), camera="inspect") as source:
        frame = next(iter(source))
    pipeline = _models(weights, fps=1.0, camera="inspect")
    pipeline.tracker = None  # a still image: number persons left to right
    obs = pipeline.process(frame)
    if as_json:
        payload = obs.to_dict()
        for p in payload["persons"]:  # landmarks are long; inspect is for people
            p.pop("keypoints_world", None)
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=1))
        return
    typer.echo(f"{image}: {obs.width}x{obs.height}, {len(obs.persons)} person(s)")
    for p in obs.persons:
        f = p.features
        box = ", ".join(f"{v:.0f}" for v in p.box)
        typer.echo(
            f"#{p.track_id} box [{box}] conf {p.confidence:.2f} "
            f"pose {'yes' if p.keypoints is not None else 'no'}"
        )
        for name in ("posture", "hands", "phone", "legs"):
            lab = getattr(f, name)
            typer.echo(f"    {name:<15} {lab.value} ({lab.confidence:.2f})")
        for name in ("trunk_lean_deg", "head_pitch_deg", "body_yaw_deg", "heel_gap", "toe_angle_deg"):
            m = getattr(f, name)
            typer.echo(f"    {name:<15} {'unknown' if m.value is None else f'{m.value:.2f}'}")
        objs = ", ".join(f"{k} {v:.2f}" for k, v in f.objects.items()) or "none"
        typer.echo(f"    {'objects':<15} {objs}")


@app.command()
def analyze(
    source: Annotated[
        str,
        typer.Argument(help="Video file, image, folder, rtsp:// or http:// URL, webcam index, or 'demo'."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder for alerts.jsonl and friends.")],
    fps: Annotated[
        float, typer.Option(min=0.1, max=60.0, help="Analysis rate in frames per second of video.")
    ] = 5.0,
    site: Annotated[
        Path | None,
        typer.Option(help="Site file (zones, roles, overrides); SOURCE may then be one of its camera ids."),
    ] = None,
    role: Annotated[
        str, typer.Option(help="Role on duty in the frame (without a site the frame is one post).")
    ] = "front_desk",
    params: Annotated[
        Path | None,
        typer.Option(help="YAML file of clause parameter overrides: {clause_id: {param: value}}."),
    ] = None,
    dump: Annotated[bool, typer.Option("--dump", help="Also write observations.jsonl.")] = False,
    annotate: Annotated[bool, typer.Option("--annotate", help="Also write annotated.mp4.")] = False,
    camera: Annotated[str, typer.Option(help="Camera id written into observations and alerts.")] = "cam0",
    weights: Annotated[
        str | None, typer.Option(help="Detector weights (see README for the search order).")
    ] = None,
    video_weights: Annotated[str, typer.Option(help=VIDEO_WEIGHTS_HELP)] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run the pipeline and the conduct rules over a video or stream; write DIR/alerts.jsonl.

    Exit status: 0 done; 2 the source, site or parameters could not be used (one line says why);
    3 done, but the file was not sound (a container that lies about its frame count, a truncated
    file, frames that did not decode): every frame that decoded was analysed, and each problem is
    printed as a warning.
    """
    from service.analyze import run_analysis

    out.mkdir(parents=True, exist_ok=True)
    spec = source
    loaded = None
    site_camera = None
    if site is not None:
        from calibration.site import load_site

        loaded = load_site(site)
        if source in [c.id for c in loaded.cameras]:
            site_camera = source
            spec = source = loaded.camera(source).source
        elif camera != "cam0":
            site_camera = camera
    if source == DEMO:
        from vision.demo import make_demo_clip

        spec = str(make_demo_clip(out / "demo.mp4"))
        typer.echo(f"demo clip: {spec}")
    summary = run_analysis(
        spec,
        out,
        fps=fps,
        camera=camera,
        role=role,
        overrides=_load_overrides(params),
        dump=dump,
        annotate=annotate,
        weights=weights,
        video_weights=video_weights,
        progress=progress,
        site=loaded,
        site_camera=site_camera,
    )
    typer.echo(
        f"{summary['frames']} frames analysed ({summary['seconds']:.1f} s of video), "
        f"{summary['alerts']} alert(s) → {out / 'alerts.jsonl'}"
    )
    for line in summary["lines"]:
        typer.echo("  " + line)
    if summary["problems"]:
        # Everything that decoded was analysed and written; exit 3 says the source was not sound.
        for problem in summary["problems"]:
            typer.echo(f"postwatch: warning: {problem}", err=True)
        raise typer.Exit(EXIT_SOURCE_PROBLEMS)


@app.command()
def clauses(
    role: Annotated[str | None, typer.Option(help="Only the clauses that apply to this role.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the conduct clauses postwatch checks (id, Chinese text, gloss, defaults)."""
    from rules.catalogue import format_clauses

    typer.echo(format_clauses(role=role, as_json=as_json))


@app.command()
def serve(
    site: Annotated[Path, typer.Option("--site", help="Site file: cameras, zones, roles, delivery.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL or SQLite path (default: $POSTWATCH_DB, else SITE.db beside the site)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where clips and snapshots go (default: SITE-media/).")
    ] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Replay video files forever (demos, tests).")] = False,
    weights: Annotated[
        str | None, typer.Option(help="Detector weights (see README for the search order).")
    ] = None,
    video_weights: Annotated[str, typer.Option(help=VIDEO_WEIGHTS_HELP)] = "auto",
    inference_threads: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Threads analysing frames, each with its own copy of the models (about 180 MB); "
            "cameras are shared between them. More than the CPU cores gains nothing "
            "(docs/performance.md).",
        ),
    ] = DEFAULT_INFERENCE_THREADS,
    detect_pairs: Annotated[
        bool,
        typer.Option(
            "--detect-pairs",
            help="Detect two cameras' frames in one detector call, each on half of its input: "
            "fewer detector calls, but each frame seen at a smaller scale (off: it cost walking "
            "events on the labelled clips; docs/performance.md).",
        ),
    ] = False,
    decode_threads: Annotated[
        int,
        typer.Option(
            min=0,
            max=16,
            help="FFmpeg threads decoding each camera; 0: FFmpeg's choice, one per core. One suits "
            "many cameras, which are decoded side by side; more helps a single 4K camera keep up.",
        ),
    ] = 1,
) -> None:
    """Run the alert service: the HTTP API (OpenAPI at /docs) and one worker per camera of the site."""
    from service.serve import run, site_options
    from service.workers import WorkerOptions

    options = site_options(site)
    run(
        site, host=host, port=port, db=db, loop_files=loop, weights=weights, out_dir=out,
        video_weights=video_weights,
        worker_options=WorkerOptions(
            inference_threads=inference_threads, detect_pairs=detect_pairs, decode_threads=decode_threads
        ),
        **options,
    )  # fmt: skip


keys_app = typer.Typer(help="API keys: each has a role (admin, manager, trainer, security) and site scope.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, manager, trainer or security.")],
    site: Annotated[
        list[str], typer.Option(help="Site name the key may see (repeat for several; * for all).")
    ],
    camera: Annotated[
        list[str] | None, typer.Option(help="Narrow the key to these cameras (repeatable).")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL or SQLite path: the same one `serve` uses.")
    ] = None,
    site_file: Annotated[
        Path | None, typer.Option(help="Use the database `serve --site SITE_FILE` uses by default.")
    ] = None,
    name: Annotated[str, typer.Option(help="A note on whose key this is.")] = "",
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from service.serve import create_key_command, default_db

    if db is None and site_file is not None:
        db = default_db(site_file)
    typer.echo(create_key_command(db, role, site, camera or None, name=name))


def main() -> None:
    """Console entry point: turn every expected failure into one line on stderr."""
    _quiet_libraries()
    from sqlalchemy.exc import ArgumentError, OperationalError

    from calibration.site import SiteError
    from rules.catalogue import ParamError
    from vision.detect import WeightsError
    from vision.sources import SourceError

    try:
        code = app(standalone_mode=False)
    except (UserError, SourceError, WeightsError, ParamError, SiteError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"postwatch: {message}", err=True)
        sys.exit(2)
    except (OperationalError, ArgumentError) as exc:  # --db unreachable, refused, or not a URL
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(f"postwatch: cannot open the database: {reason}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("postwatch: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        # Usage errors (click's, bundled inside typer): they know how to print themselves.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
