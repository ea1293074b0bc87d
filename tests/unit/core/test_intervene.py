from __future__ import annotations

import torch
from torch.testing import assert_close

from core.intervene import interchange


def test_hard_coordinate_interchange_copies_only_the_support(device: torch.device) -> None:
    base, source = torch.randn(5, 6, device=device), torch.randn(5, 6, device=device)
    mask = torch.zeros(1, 6, device=device)
    mask[0, 2:4] = 1
    out = interchange(base, source, mask)
    assert_close(out[:, 2:4], source[:, 2:4])
    assert_close(out[:, [0, 1, 4, 5]], base[:, [0, 1, 4, 5]])


def test_subspace_interchange_matches_the_projection_formula(device: torch.device) -> None:
    base, source = torch.randn(7, 5, device=device), torch.randn(7, 5, device=device)
    basis, _ = torch.linalg.qr(torch.randn(5, 2, device=device))
    expected = base + (source - base) @ basis @ basis.T
    assert_close(interchange(base, source, torch.ones(1, 2, device=device), basis), expected)


def test_stacked_interventions_are_copy_major(device: torch.device) -> None:
    base, source = torch.randn(3, 4, device=device), torch.randn(3, 4, device=device)
    coefficients = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0.5]], device=device)
    out = interchange(base.repeat(2, 1), source, coefficients)
    assert_close(out[:3], interchange(base, source, coefficients[:1]))
    assert_close(out[3:], interchange(base, source, coefficients[1:]))
    assert_close(out[3:, 3], base[:, 3] + 0.5 * (source[:, 3] - base[:, 3]))
