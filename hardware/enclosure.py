"""Parametric enclosure for the Pico build, in code-CAD (manifold3d): STL files and a preview.

``python hardware/enclosure.py [OUTDIR]`` writes

- ``enclosure/pico-base.stl``: the tray: the Pico on four posts at its mounting holes, its
  USB socket behind an opening in the end wall, four recesses for 10 mm rubber feet;
- ``enclosure/pico-lid.stl``: the lid for an EC11-class encoder (M7 bushing), with a lip
  that friction-fits the tray; printed upside down (top face on the bed, no supports);
- ``enclosure/pico-pot-lid.stl``: the same lid for the potentiometer build, with 11 scale
  marks engraved over 270 degrees of travel around the bushing (centre mark longer);
- ``images/enclosure-pico.png``: an exploded view (tray, lid, knob) for the assembly guide.

Every size is a field of ``Params`` (millimetres). The output is deterministic: the same
parameters give the same bytes. Assembly notes are in hardware/README.md.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from manifold3d import Manifold
from mesh import Mesh, render, write_png, write_stl

HERE = Path(__file__).resolve().parent
SEGMENTS = 48  # facets per full circle: fixed, so the meshes never depend on defaults


@dataclass(frozen=True)
class Params:
    length: float = 80.0  # outside, along the Pico
    width: float = 50.0
    height: float = 28.0  # tray, outside, without the lid
    wall: float = 2.4
    floor: float = 2.4
    corner: float = 6.0  # outside corner radius
    lid: float = 3.0  # lid plate thickness
    lip: float = 3.0  # lip depth into the tray
    lip_wall: float = 1.6
    clearance: float = 0.2  # per side, lip to tray wall (PLA on a 0.4 mm nozzle)
    # Raspberry Pi Pico (also W and 2): 51 x 21 mm, mounting holes 2.1 mm at 2 / 4.8 mm
    pico_length: float = 51.0
    pico_width: float = 21.0
    pico_holes: tuple[tuple[float, float], ...] = ((2.0, 4.8), (2.0, 16.2), (49.0, 4.8),
                                                    (49.0, 16.2))
    post_height: float = 2.5
    post_diameter: float = 4.5
    pin_diameter: float = 1.7
    pin_height: float = 1.4
    usb_width: float = 12.0  # opening for a micro-USB plug's overmould
    usb_height: float = 9.0
    # control: EC11 encoder or 9 mm potentiometer, both with an M7 threaded bushing
    bushing_hole: float = 7.4
    control_x: float = 0.6  # fraction of the length
    feet_diameter: float = 10.5
    feet_depth: float = 1.0
    feet_inset: float = 9.0
    marks: int = 11
    mark_travel_deg: float = 270.0
    mark_radius: tuple[float, float] = (13.0, 17.0)
    mark_width: float = 1.0
    mark_depth: float = 0.6
    knob_diameter: float = 30.0  # preview only
    knob_height: float = 16.0


def rounded_box(x: float, y: float, z: float, r: float) -> Manifold:
    """A box [0, x] x [0, y] x [0, z] with vertical edges rounded to radius r."""
    r = max(min(r, x / 2, y / 2), 0.01)
    corners = [Manifold.cylinder(z, r, r, SEGMENTS).translate((cx, cy, 0))
               for cx in (r, x - r) for cy in (r, y - r)]
    return Manifold.batch_hull(corners)


def pico_origin(p: Params) -> tuple[float, float]:
    """Where the Pico's USB-end corner sits: against the inner end wall, centred across."""
    return p.wall + 1.0, (p.width - p.pico_width) / 2


def base(p: Params) -> Manifold:
    body = rounded_box(p.length, p.width, p.height, p.corner)
    cavity = rounded_box(p.length - 2 * p.wall, p.width - 2 * p.wall, p.height,
                         p.corner - p.wall).translate((p.wall, p.wall, p.floor))
    shell = body - cavity
    ox, oy = pico_origin(p)
    for hx, hy in p.pico_holes:
        post = Manifold.cylinder(p.post_height, p.post_diameter / 2, p.post_diameter / 2,
                                 SEGMENTS)
        pin = Manifold.cylinder(p.post_height + p.pin_height, p.pin_diameter / 2,
                                p.pin_diameter / 2, SEGMENTS)
        shell = shell + (post + pin).translate((ox + hx, oy + hy, p.floor - 0.01))
    # USB opening: centred on the socket, which stands ~2.3 mm above the Pico's PCB bottom
    socket_z = p.floor + p.post_height + 2.3
    usb = Manifold.cube((p.wall + 2, p.usb_width, p.usb_height)).translate(
        (-1, p.width / 2 - p.usb_width / 2, socket_z - p.usb_height / 2))
    shell = shell - usb
    for fx in (p.feet_inset, p.length - p.feet_inset):
        for fy in (p.feet_inset, p.width - p.feet_inset):
            foot = Manifold.cylinder(p.feet_depth + 0.01, p.feet_diameter / 2,
                                     p.feet_diameter / 2, SEGMENTS)
            shell = shell - foot.translate((fx, fy, -0.01))
    return shell


def lid(p: Params, *, marks: bool = False) -> Manifold:
    """The lid as printed: top face on the bed (z = 0), the lip upwards."""
    plate = rounded_box(p.length, p.width, p.lid, p.corner)
    inset = p.wall + p.clearance
    lip_outer = rounded_box(p.length - 2 * inset, p.width - 2 * inset, p.lip,
                            p.corner - inset)
    lip_inner = rounded_box(p.length - 2 * inset - 2 * p.lip_wall,
                            p.width - 2 * inset - 2 * p.lip_wall, p.lip + 0.02,
                            p.corner - inset - p.lip_wall).translate((p.lip_wall, p.lip_wall,
                                                                      -0.01))
    ring = (lip_outer - lip_inner).translate((inset, inset, p.lid - 0.01))
    shape = plate + ring
    cx, cy = p.length * p.control_x, p.width / 2
    hole = Manifold.cylinder(p.lid + 0.2, p.bushing_hole / 2, p.bushing_hole / 2, SEGMENTS)
    shape = shape - hole.translate((cx, cy, -0.1))
    if marks:
        r0, r1 = p.mark_radius
        for i in range(p.marks):
            # 0 degrees points away from the user (+y); marks from -travel/2 to +travel/2.
            # The lid is printed upside down, so the angles are mirrored here (x -> -x).
            angle = -p.mark_travel_deg / 2 + i * p.mark_travel_deg / (p.marks - 1)
            outer = r1 + (2.0 if i == p.marks // 2 else 0.0)
            tick = Manifold.cube((p.mark_width, outer - r0, p.mark_depth + 0.01)).translate(
                (-p.mark_width / 2, r0, -0.01))
            shape = shape - tick.rotate((0, 0, angle)).translate((cx, cy, 0))
    return shape


def knob(p: Params) -> Manifold:
    return Manifold.cylinder(p.knob_height, p.knob_diameter / 2, p.knob_diameter / 2 - 1.5,
                             SEGMENTS)


def to_mesh(m: Manifold) -> Mesh:
    out = m.to_mesh()
    vertices = np.asarray(out.vert_properties, dtype=float)[:, :3]
    return Mesh(vertices, np.asarray(out.tri_verts, dtype=np.int64))


def build(p: Params = Params()) -> dict[str, Mesh]:
    return {
        "pico-base": to_mesh(base(p)),
        "pico-lid": to_mesh(lid(p)),
        "pico-pot-lid": to_mesh(lid(p, marks=True)),
    }


def preview(meshes: dict[str, Mesh], p: Params = Params()) -> np.ndarray:
    """Exploded view: the tray, the lid turned right way up 18 mm above it, the knob."""
    lid_mesh = meshes["pico-lid"]
    flipped = Mesh(lid_mesh.vertices * np.array([1.0, -1.0, -1.0]),
                   lid_mesh.triangles)  # rotated 180 degrees about x: top face up
    lift = p.height + 18.0 + p.lid
    lid_up = flipped.translated((0.0, p.width, lift))
    knob_mesh = to_mesh(knob(p)).translated(
        (p.length * p.control_x, p.width / 2, lift + 10.0))
    return render([(meshes["pico-base"], (120, 160, 200)), (lid_up, (120, 160, 200)),
                   (knob_mesh, (70, 70, 75))])


def generate(out: Path = HERE, p: Params = Params()) -> list[Path]:
    meshes = build(p)
    (out / "enclosure").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for name, mesh in meshes.items():
        path = out / "enclosure" / f"{name}.stl"
        write_stl(mesh, path)
        written.append(path)
    png = out / "images" / "enclosure-pico.png"
    write_png(preview(meshes, p), png)
    written.append(png)
    return written


def mark_angles(p: Params = Params()) -> list[float]:
    """The scale marks' angles in degrees, as seen on the finished lid (for the guide)."""
    return [-p.mark_travel_deg / 2 + i * p.mark_travel_deg / (p.marks - 1)
            for i in range(p.marks)]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
    assert math.isclose(sum(mark_angles()), 0.0, abs_tol=1e-9)
