"""An arm's URDF for the viewer: its links' visual meshes and their world poses at a set of joint positions.

Only what drawing needs is read: links, joints (fixed, revolute, continuous, prismatic; a mimic joint
follows its leader), and each link's visuals (a mesh file, a box, a cylinder or a sphere, with its origin,
scale and material colour). Forward kinematics walks the joint tree from the root in numpy, so any arm's
URDF works, not only one pybullet has loaded. Link frames are the URDF's own (not pybullet's inertial
frames, which the visual origins are not relative to).

Mesh paths: absolute, relative to the URDF's folder, or ``package://NAME/rest``, looked up as NAME/rest
in the URDF's folder and its ancestors, and as rest beside the URDF (pybullet_data's Panda writes
``package://meshes/...``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

DEFAULT_COLOUR = (0.85, 0.85, 0.85, 1.0)
JOINT_TYPES = ("fixed", "revolute", "continuous", "prismatic")


def default_urdf() -> Path:
    """pybullet_data's Franka Emika Panda, the arm of the embedded simulator."""
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"


def origin_matrix(element: ElementTree.Element | None) -> np.ndarray:
    """A URDF ``<origin xyz rpy>`` as a 4x4 transform (identity when absent); rpy is fixed-axis x-y-z."""
    transform = np.eye(4)
    if element is None:
        return transform
    transform[:3, 3] = _floats(element.get("xyz", "0 0 0"), 3, "origin xyz")
    transform[:3, :3] = Rotation.from_euler("xyz", _floats(element.get("rpy", "0 0 0"), 3, "origin rpy")).as_matrix()
    return transform


def _floats(text: str, count: int, what: str) -> np.ndarray:
    values = np.array([float(v) for v in text.split()], dtype=np.float64)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise ValueError(f"URDF {what} must be {count} finite numbers, got {text!r}")
    return values


@dataclass
class Visual:
    """One ``<visual>`` of a link: its geometry, its pose in the link frame, its colour (RGBA, 0–1)."""

    kind: str  # mesh | box | cylinder | sphere
    origin: np.ndarray
    rgba: tuple[float, float, float, float]
    filename: Path | None = None
    scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    size: np.ndarray = field(default_factory=lambda: np.zeros(3))  # box: xyz; cylinder: radius, length; sphere: r


@dataclass
class Joint:
    name: str
    kind: str
    parent: str
    child: str
    origin: np.ndarray
    axis: np.ndarray
    mimic: tuple[str, float, float] | None = None  # leader, multiplier, offset


class UrdfModel:
    """Links, joints and visuals of one URDF, and forward kinematics over them."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"URDF {self.path} does not exist")
        try:
            root = ElementTree.parse(self.path).getroot()
        except ElementTree.ParseError as error:
            raise ValueError(f"URDF {self.path} is not valid XML: {error}") from None
        if root.tag != "robot":
            raise ValueError(f"URDF {self.path}: the root element is <{root.tag}>, not <robot>")
        materials = {m.get("name"): _rgba(m) for m in root.findall("material") if _rgba(m) is not None}
        self.visuals: dict[str, list[Visual]] = {}
        for link in root.findall("link"):
            self.visuals[link.get("name")] = [self._visual(v, materials) for v in link.findall("visual")]
        self.joints: list[Joint] = []
        for element in root.findall("joint"):
            kind = element.get("type", "")
            if kind not in JOINT_TYPES:
                # floating and planar joints carry no single coordinate; drawn as fixed.
                kind = "fixed"
            axis = _floats(element.find("axis").get("xyz"), 3, "joint axis") if element.find("axis") is not None \
                else np.array([1.0, 0.0, 0.0])
            norm = np.linalg.norm(axis)
            mimic = element.find("mimic")
            self.joints.append(Joint(
                name=element.get("name"), kind=kind, parent=element.find("parent").get("link"),
                child=element.find("child").get("link"), origin=origin_matrix(element.find("origin")),
                axis=axis / norm if norm > 0 else np.array([1.0, 0.0, 0.0]),
                mimic=None if mimic is None else (mimic.get("joint"), float(mimic.get("multiplier", 1.0)),
                                                  float(mimic.get("offset", 0.0)))))
        children = {joint.child for joint in self.joints}
        roots = [name for name in self.visuals if name not in children]
        if len(roots) != 1:
            raise ValueError(f"URDF {self.path} must have one root link, found {roots or 'none'}")
        self.root = roots[0]
        self._order = self._tree_order()
        self.joint_names = [joint.name for joint in self.joints if joint.kind != "fixed"]

    def _tree_order(self) -> list[Joint]:
        """Joints parents-first, so one pass computes every link's pose."""
        by_parent: dict[str, list[Joint]] = {}
        for joint in self.joints:
            by_parent.setdefault(joint.parent, []).append(joint)
        order, frontier = [], [self.root]
        while frontier:
            link = frontier.pop()
            for joint in by_parent.get(link, []):
                order.append(joint)
                frontier.append(joint.child)
        return order

    def _visual(self, element: ElementTree.Element, materials: dict) -> Visual:
        material = element.find("material")
        rgba = None
        if material is not None:
            rgba = _rgba(material) or materials.get(material.get("name"))
        visual = Visual(kind="", origin=origin_matrix(element.find("origin")), rgba=rgba or DEFAULT_COLOUR)
        geometry = element.find("geometry")
        shape = geometry[0] if geometry is not None and len(geometry) else None
        if shape is None:
            raise ValueError(f"URDF {self.path}: a <visual> without a geometry")
        visual.kind = shape.tag
        if shape.tag == "mesh":
            visual.filename = self.resolve(shape.get("filename", ""))
            if shape.get("scale"):
                visual.scale = _floats(shape.get("scale"), 3, "mesh scale")
        elif shape.tag == "box":
            visual.size = _floats(shape.get("size", ""), 3, "box size")
        elif shape.tag == "cylinder":
            visual.size = np.array([float(shape.get("radius")), float(shape.get("length")), 0.0])
        elif shape.tag == "sphere":
            visual.size = np.array([float(shape.get("radius")), 0.0, 0.0])
        else:
            raise ValueError(f"URDF {self.path}: unknown visual geometry <{shape.tag}>")
        return visual

    def resolve(self, filename: str) -> Path:
        """A mesh's file (see the module's docstring); FileNotFoundError names where it was looked for."""
        folder = self.path.parent
        if filename.startswith("package://"):
            rest = filename[len("package://"):]
            package, _, inside = rest.partition("/")
            candidates = [ancestor / package / inside for ancestor in (folder, *folder.parents)]
            candidates += [folder / rest, folder / inside]
        elif filename.startswith("file://"):
            candidates = [Path(filename[len("file://"):])]
        else:
            candidates = [folder / filename]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"URDF {self.path}: mesh {filename!r} not found (looked in "
                                f"{', '.join(str(c) for c in candidates[:4])}{', ...' if len(candidates) > 4 else ''})")

    def link_poses(self, positions: dict[str, float], base: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every link's 4x4 world pose at ``positions`` (joint name -> rad or m; a missing mimic joint follows
        its leader, other missing joints are at 0), the
        root at ``base`` (4x4, identity by default)."""
        poses = {self.root: np.eye(4) if base is None else np.asarray(base, dtype=np.float64)}
        for joint in self._order:
            value = positions.get(joint.name, 0.0)
            if joint.mimic is not None and joint.name not in positions:  # its own reading wins
                leader, multiplier, offset = joint.mimic
                value = positions.get(leader, 0.0) * multiplier + offset
            motion = np.eye(4)
            if joint.kind in ("revolute", "continuous"):
                motion[:3, :3] = Rotation.from_rotvec(joint.axis * value).as_matrix()
            elif joint.kind == "prismatic":
                motion[:3, 3] = joint.axis * value
            poses[joint.child] = poses[joint.parent] @ joint.origin @ motion
        return poses

    def meshes(self):
        """(link name, Visual, trimesh.Trimesh in the visual's own frame) for every visual, in URDF order.
        Mesh files are loaded and merged into one mesh each; primitives are built."""
        import trimesh

        for link, visuals in self.visuals.items():
            for visual in visuals:
                if visual.kind == "mesh":
                    mesh = trimesh.load(visual.filename, force="mesh", process=False)
                    mesh.apply_scale(visual.scale)
                elif visual.kind == "box":
                    mesh = trimesh.creation.box(extents=visual.size)
                elif visual.kind == "cylinder":
                    mesh = trimesh.creation.cylinder(radius=visual.size[0], height=visual.size[1])
                else:
                    mesh = trimesh.creation.icosphere(radius=visual.size[0])
                if visual.kind != "mesh" or not _has_colour(mesh):
                    mesh.visual = trimesh.visual.ColorVisuals(
                        mesh, face_colors=np.tile(np.round(np.array(visual.rgba) * 255).astype(np.uint8),
                                                  (len(mesh.faces), 1)))
                yield link, visual, mesh


def _rgba(material: ElementTree.Element) -> tuple[float, float, float, float] | None:
    colour = material.find("color")
    if colour is None or not colour.get("rgba"):
        return None
    return tuple(float(v) for v in _floats(colour.get("rgba"), 4, "material rgba"))


def _has_colour(mesh) -> bool:
    """Whether a loaded mesh brings its own colours (an .mtl, a texture, vertex colours)."""
    kind = getattr(mesh.visual, "kind", None)
    return kind in ("texture", "vertex", "face")
