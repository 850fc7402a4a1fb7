"""The site file: what a person configures once per store so every rule knows the place.

Cameras, their zones (image polygons with a kind and the role on duty), the
door, a floor scale (four image points with their floor positions in metres),
opening hours and shifts, roles with their uniform profiles, approved leave,
and clause parameter overrides. Validated with pydantic; every error names
the key path and the problem, so a wrong config is one clear message.
"""

from __future__ import annotations

import math
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import Point, Polygon

from rules.catalogue import ROLES, ParamError, validate_overrides

ZoneKind = Literal["post", "staff_only", "standby", "work", "customer"]
XY = tuple[float, float]


class SiteError(ValueError):
    """A site file that cannot be used; the message names the key and the problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Zone(Strict):
    """An image polygon on one camera. A `post` names the role on duty and how many must staff it."""

    name: str
    kind: ZoneKind
    polygon: list[XY] = Field(min_length=3)
    role: str | None = None
    min_staff: int = Field(1, ge=0)

    @field_validator("polygon")
    @classmethod
    def _simple(cls, v: list[XY]) -> list[XY]:
        poly = Polygon(v)
        if not poly.is_valid:
            raise ValueError("polygon is self-intersecting or degenerate (its edges cross)")
        if poly.area <= 0:
            raise ValueError("polygon has no area")
        return v

    @model_validator(mode="after")
    def _role_for_posts(self) -> Zone:
        if self.kind in ("post", "standby") and not self.role:
            raise ValueError(f"a {self.kind} zone needs the role on duty there (role: ...)")
        return self

    @property
    def shape(self) -> Polygon:
        return Polygon(self.polygon)

    def contains(self, xy: XY) -> bool:
        return bool(self.shape.covers(Point(xy)))


class Door(Strict):
    """Where the door is in the image, and the body yaw (as `Features.body_yaw_deg`: 0 = facing the
    camera, positive = turned to the person's left) of someone standing at the post facing the door."""

    point: XY
    facing_yaw_deg: float = Field(ge=-180, le=180)


class FloorScale(Strict):
    """Four image points and their positions on the floor in metres: a homography, so that
    distances and speeds come out in metres."""

    image: list[XY] = Field(min_length=4, max_length=4)
    floor_m: list[XY] = Field(min_length=4, max_length=4)

    @model_validator(mode="after")
    def _solvable(self) -> FloorScale:
        for name, pts in (("image", self.image), ("floor_m", self.floor_m)):
            if Polygon(pts).area <= 1e-9 or not Polygon(pts).is_valid:
                raise ValueError(f"the four {name} points must form a proper quadrilateral (no 3 in a line)")
        return self

    def matrix(self) -> np.ndarray:
        import cv2

        return cv2.getPerspectiveTransform(np.float32(self.image), np.float32(self.floor_m))

    def to_floor(self, xy: XY) -> XY:
        p = self.matrix() @ np.array([xy[0], xy[1], 1.0])
        return float(p[0] / p[2]), float(p[1] / p[2])

    def distance_m(self, a: XY, b: XY) -> float:
        fa, fb = self.to_floor(a), self.to_floor(b)
        return math.hypot(fa[0] - fb[0], fa[1] - fb[1])


class Shift(Strict):
    """A shift start: the post must be staffed from `start` (e.g. the cashier's 10:30)."""

    name: str
    start: time
    post: str  # zone name


class Camera(Strict):
    id: str
    source: str
    fps: float = Field(5.0, gt=0, le=60)
    frame_size: tuple[int, int] | None = None  # width, height; checked against the zones when given
    start_time: datetime | None = None  # wall-clock time of t=0 for recorded files (opening hours, shifts)
    opening_hours: list[tuple[time, time]] = Field(default_factory=list)  # empty = always open
    shifts: list[Shift] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    door: Door | None = None
    floor: FloorScale | None = None

    @model_validator(mode="after")
    def _zones_fit(self) -> Camera:
        names = [z.name for z in self.zones]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"zone names must be unique per camera, repeated: {', '.join(dupes)}")
        if self.frame_size is not None:
            w, h = self.frame_size
            for z in self.zones:
                outside = [p for p in z.polygon if not (0 <= p[0] <= w and 0 <= p[1] <= h)]
                if outside:
                    raise ValueError(
                        f"zone {z.name!r} has points outside the {w}x{h} frame: "
                        + ", ".join(f"({x:g}, {y:g})" for x, y in outside)
                    )
        for s in self.shifts:
            if s.post not in names:
                raise ValueError(f"shift {s.name!r} names post {s.post!r}, not a zone of this camera")
        return self

    def zone(self, name: str) -> Zone:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(f"camera {self.id!r} has no zone {name!r}")

    def zones_of(self, kind: str) -> list[Zone]:
        return [z for z in self.zones if z.kind == kind]

    def is_open(self, t: float) -> bool:
        """Whether the site is open at stream time `t` (always, without hours or a start time)."""
        if not self.opening_hours or self.start_time is None:
            return True
        clock = datetime.fromtimestamp(self.start_time.timestamp() + t, tz=self.start_time.tzinfo).time()
        return any(a <= clock < b if a <= b else (clock >= a or clock < b) for a, b in self.opening_hours)


class Uniform(Strict):
    """An enrolled uniform: the torso colour model written by `postwatch calibrate uniform`."""

    colours_lab: list[tuple[float, float, float]] = Field(min_length=1)  # cluster centres, CIE Lab
    weights: list[float] = Field(min_length=1)
    max_distance: float = Field(12.0, gt=0)  # Lab distance within which a torso pixel matches
    images: list[str] = Field(default_factory=list)  # the photos it was enrolled from


class Role(Strict):
    uniform: Uniform | None = None
    tie_required: bool = False
    cap_required: bool = False
    clauses: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per-role overrides


class Approval(Strict):
    """Approved leave (d1.floor.14): the post may stand empty in this window."""

    camera: str
    post: str
    start: datetime
    end: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Approval:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Privacy(Strict):
    blur_faces: bool = True  # in clips, everyone's face but the person concerned


class Clips(Strict):
    before_s: float = Field(4.0, ge=0, le=60)
    after_s: float = Field(6.0, ge=0, le=60)
    retention_days: float | None = Field(None, gt=0)  # clip files older than this are deleted
    font: str | None = None  # a TTF/OTF with Chinese glyphs to quote the clause in clips


class Webhook(Strict):
    url: str
    secret_env: str  # the environment variable holding the HMAC secret (never the secret itself)
    kinds: list[str] | None = None  # e.g. [alert.opened, alert.closed]; all when omitted


class Mqtt(Strict):
    url: str  # mqtt://host:1883
    prefix: str = "postwatch"


class Delivery(Strict):
    public_url: str = ""  # how clip and snapshot links in events should start
    webhooks: list[Webhook] = Field(default_factory=list)
    mqtt: Mqtt | None = None


class Site(Strict):
    name: str = "site"
    cameras: list[Camera] = Field(min_length=1)
    privacy: Privacy = Field(default_factory=Privacy)
    clips: Clips = Field(default_factory=Clips)
    delivery: Delivery = Field(default_factory=Delivery)
    roles: dict[str, Role] = Field(default_factory=dict)
    approvals: list[Approval] = Field(default_factory=list)
    clauses: dict[str, dict[str, Any]] = Field(default_factory=dict)  # site-wide overrides

    @model_validator(mode="after")
    def _references(self) -> Site:
        known = set(ROLES) | set(self.roles)
        for role in self.roles:
            if role not in ROLES:
                raise ValueError(f"roles: unknown role {role!r} (known: {', '.join(ROLES)})")
        ids = [c.id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError("camera ids must be unique")
        for cam in self.cameras:
            for z in cam.zones:
                if z.role is not None and z.role not in known:
                    raise ValueError(
                        f"camera {cam.id!r} zone {z.name!r}: unknown role {z.role!r} "
                        f"(known: {', '.join(ROLES)})"
                    )
        for a in self.approvals:
            cam = next((c for c in self.cameras if c.id == a.camera), None)
            if cam is None:
                raise ValueError(f"approval for unknown camera {a.camera!r}")
            if a.post not in [z.name for z in cam.zones]:
                raise ValueError(f"approval for camera {a.camera!r} names unknown post {a.post!r}")
        return self

    def camera(self, camera_id: str) -> Camera:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(f"site has no camera {camera_id!r} (cameras: {', '.join(c.id for c in self.cameras)})")

    def overrides_for(self, role: str | None) -> dict[str, dict[str, Any]]:
        """Site-wide overrides with the role's on top (later wins), for `RuleEngine(overrides=...)`."""
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.clauses.items()}
        if role and role in self.roles:
            for clause, params in self.roles[role].clauses.items():
                merged.setdefault(clause, {}).update(params)
        return merged


def _where(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ())) or "(top level)"


def load_site(path: str | Path) -> Site:
    """Read and validate a site YAML; relative camera sources are resolved against the file's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteError(f"Cannot read site file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise SiteError(f"Site file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SiteError(f"Site file {path} must be a mapping with at least 'cameras'.")
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise SiteError(f"{path}: {_where(first)}: {msg}{more}") from exc
    try:
        validate_overrides(site.clauses, where="clauses")
        for name, role in site.roles.items():
            validate_overrides(role.clauses, where=f"roles.{name}.clauses")
    except ParamError as exc:
        raise SiteError(f"{path}: {exc}") from exc
    for cam in site.cameras:
        src = Path(cam.source)
        if cam.source == "demo":  # the built-in demo clip, built by whoever runs the site
            continue
        if not src.is_absolute() and "://" not in cam.source and not cam.source.isdigit():
            candidate = (path.parent / src).resolve()
            cam.source = str(candidate)
    return site
