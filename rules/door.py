"""The door of d1.reception.05 (站门客服…以45度面向门口): how a body yaw becomes an angle to the door.

The site file gives each camera's door as `Door.facing_yaw_deg`: the body yaw (in
`Features.body_yaw_deg`'s convention: 0 = facing the camera, positive = turned to the
person's left) of someone at the post squarely facing the door. The angle to the door is
then just the wrapped difference between the person's yaw and that one, whatever the
camera's placement; no image geometry is needed.

Why the check itself (`rules.checks.door_angle`) does not live here: every rule's check is
registered in `rules.checks.RULES`, and this module must not import `rules.checks` back.
The session passes the door to the check as `person.evidence[DOOR_FACING_KEY]`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.geometry import yaw_difference_deg

#: `person.evidence` key of the camera's door: `Door.facing_yaw_deg` as a float (degrees).
DOOR_FACING_KEY = "door_facing_yaw_deg"


def door_facing_yaw(evidence: Mapping[str, Any]) -> float | None:
    """The door's facing yaw from a person's evidence, None when the camera has no (usable) door."""
    value = evidence.get(DOOR_FACING_KEY)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def angle_to_door_deg(body_yaw_deg: float, facing_yaw_deg: float) -> float:
    """How far (0-180 degrees) the body is turned away from squarely facing the door.

    0 = facing the door square on, 90 = side on to it, 180 = back to it. Unsigned: the
    clause asks for 45 degrees to the door and does not say to which side.
    """
    return yaw_difference_deg(body_yaw_deg, facing_yaw_deg)


@dataclass(frozen=True)
class DoorAngle:
    """One frame's angle to the door against the clause's target and tolerance."""

    angle_deg: float  # measured angle to the door, [0, 180]
    target_deg: float
    tolerance_deg: float

    @property
    def off_deg(self) -> float:
        """How far the angle is from the target (degrees, >= 0)."""
        return abs(self.angle_deg - self.target_deg)

    @property
    def outside(self) -> bool:
        """Whether the stance breaks the clause: off the target by more than the tolerance."""
        return self.off_deg > self.tolerance_deg

    def describe(self) -> str:
        """What an alert says: the measured angle and the target (the clause's wording in brackets)."""
        return (
            f"standing at {self.angle_deg:.0f} deg to the door, not {self.target_deg:g} ± "
            f"{self.tolerance_deg:g} deg (以45度面向门口)"
        )


def judge_door_angle(
    body_yaw_deg: float, facing_yaw_deg: float, target_deg: float, tolerance_deg: float
) -> DoorAngle:
    """The angle to the door of a person with this body yaw, against target ± tolerance."""
    return DoorAngle(angle_to_door_deg(body_yaw_deg, facing_yaw_deg), float(target_deg), float(tolerance_deg))
