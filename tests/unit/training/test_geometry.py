"""The 6D rotation representation: Gram-Schmidt back to a proper rotation for every input."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from openhelix_training.geometry import matrix_to_rot6d, rot6d_to_matrix

# Inputs a raw model output can take: DDIM's x0 clipping to [-1, 1] saturates both columns to the same
# corner (an untrained System 1 did this in a lockstep run), a column at zero, both at zero.
DEGENERATE = np.array([
    [1.0, -1.0, -1.0, 1.0, -1.0, -1.0],
    [0.5, -0.5, -0.5, 1.0, -1.0, -1.0],
    [0.0, 0.0, 1.0, 0.0, 0.0, -1.0],
    [0.0, 0.0, 0.0, 0.3, 0.4, 0.0],
    [0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 2.0, 3.0, 1.0 + 1e-9, 2.0, 3.0],
])


def assert_proper_rotations(m):
    m = np.asarray(m, dtype=np.float64)
    np.testing.assert_allclose(m.swapaxes(-1, -2) @ m, np.broadcast_to(np.eye(3), m.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-5)
    Rotation.from_matrix(m.reshape(-1, 3, 3))  # what the nodes call: raises on a non-rotation


def test_round_trip_of_real_rotations_in_numpy_and_torch():
    rotations = Rotation.random(50, random_state=0).as_matrix()
    r6 = matrix_to_rot6d(rotations)
    np.testing.assert_allclose(rot6d_to_matrix(r6), rotations, atol=1e-9)
    np.testing.assert_allclose(rot6d_to_matrix(torch.tensor(r6)).numpy(), rotations, atol=1e-9)
    # Gram-Schmidt: scaling and a component of the second column along the first change nothing
    skewed = np.concatenate([3.0 * r6[:, :3], 0.5 * r6[:, 3:] + 0.7 * r6[:, :3]], axis=-1)
    np.testing.assert_allclose(rot6d_to_matrix(skewed), rotations, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "torch-float32", "torch-float64"])
def test_degenerate_inputs_still_give_proper_rotations(backend):
    if backend == "numpy":
        matrices = rot6d_to_matrix(DEGENERATE)
    else:
        dtype = torch.float32 if backend == "torch-float32" else torch.float64
        matrices = rot6d_to_matrix(torch.tensor(DEGENERATE, dtype=dtype)).double().numpy()
    assert_proper_rotations(matrices)
    # the first column keeps its direction whenever it has one
    for r6, m in zip(DEGENERATE, matrices, strict=True):
        if np.linalg.norm(r6[:3]) > 0:
            np.testing.assert_allclose(m[:, 0], r6[:3] / np.linalg.norm(r6[:3]), atol=1e-6)
    # numpy and torch complete the missing directions the same way
    np.testing.assert_allclose(matrices, rot6d_to_matrix(DEGENERATE), atol=1e-5)


def test_gradients_stay_finite_at_degenerate_inputs():
    r6 = torch.tensor(DEGENERATE, dtype=torch.float32, requires_grad=True)
    rot6d_to_matrix(r6).sum().backward()
    assert torch.isfinite(r6.grad).all()
