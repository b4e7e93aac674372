"""Iterated function systems (IFS): N affine maps ``w_i(x) = A_i x + t_i`` in 2-D or 3-D.

The set version of the collage idea: a compact set ``X`` with ``X ≈ ∪_i w_i(X)`` is close to the
attractor of the IFS (the collage theorem, ``h(X, attractor) ≤ h(X, ∪ w_i(X)) / (1 − s)``).

:class:`IFS` is contractive *by construction*: every linear part is an SVD-style product

    ``A_i = U(a_i) · diag(s_max · tanh(u_i)) · V(b_i)ᵀ``

with ``U``, ``V`` rotations (``matrix_exp`` of skew-symmetric matrices, so any rotation is
reachable), and signed singular values ``s_max · tanh(u)`` (a negative one is a reflection), so
the largest singular value of every ``A_i`` is below ``s_max < 1`` for any parameter values.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import is_int
from ..errors import ConfigurationError

#: Largest number of maps an IFS may have (files, the CLI and the model agree).
MAX_MAPS = 64
#: Dimensions supported.
DIMENSIONS = (2, 3)
#: Probability modes: ∝ |det A_i| (the default, with a floor so no map is never visited) or learned.
PROBABILITY_MODES = ("det", "softmax")
#: Floor of the ``det`` probabilities, as a fraction of a uniform share (Barnsley's fern stem has det 0).
DET_FLOOR = 0.05


def _n_skew(dim: int) -> int:
    return dim * (dim - 1) // 2


def skew(params: torch.Tensor, dim: int) -> torch.Tensor:
    """Skew-symmetric matrices ``(..., dim, dim)`` from ``(..., dim(dim-1)/2)`` parameters."""
    out = params.new_zeros(params.shape[:-1] + (dim, dim))
    iu = torch.triu_indices(dim, dim, offset=1)
    out[..., iu[0], iu[1]] = params
    return out - out.transpose(-1, -2)


def rotation(params: torch.Tensor, dim: int) -> torch.Tensor:
    """Rotations ``exp(skew(params))`` in SO(dim) (in closed form in 2-D: a matrix exponential's
    backward pass cost more than the rest of a fitting step)."""
    if dim == 2:
        c, s = torch.cos(params[..., 0]), torch.sin(params[..., 0])
        return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # exp([[0, p], [-p, 0]])
    # Rodrigues' formula, exactly orthogonal for any angle (float32 matrix_exp of a skew matrix
    # with a large angle is not: measured singular values of 10^4 for network outputs x50).
    K = skew(params, dim)
    theta = params.pow(2).sum(-1).clamp(min=1e-24).sqrt()[..., None, None]  # clamp: finite gradient at 0
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    unit = K / safe
    eye = torch.eye(dim, dtype=params.dtype, device=params.device)
    exact = eye + torch.sin(safe) * unit + (1 - torch.cos(safe)) * (unit @ unit)
    series = eye + K + 0.5 * (K @ K)  # second order: exact to float precision for θ < 1e-4
    return torch.where(small, series, exact)


def rotation_log(R: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rotation` for rotations ``(..., d, d)``, d = 2 or 3 (float64 inside)."""
    dim = R.shape[-1]
    R = R.double()
    if dim == 2:
        return torch.atan2(R[..., 0, 1], R[..., 0, 0]).unsqueeze(-1)  # skew(p) = [[0, p], [-p, 0]]
    # Rodrigues: R = exp(θ K), K the unit axis' cross-product matrix; skew order (0,1), (0,2), (1,2).
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    theta = torch.acos(cos)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = torch.sin(theta)
    small = sin.abs() < 1e-6
    axis = v / (2 * torch.where(small, torch.ones_like(sin), sin)).unsqueeze(-1)
    # Near θ = π: the axis from the diagonal of (R + I) / 2 = a aᵀ.
    near_pi = small & (cos < 0)
    if bool(near_pi.any()):
        B = (R + torch.eye(3, dtype=R.dtype)) / 2
        diag = B.diagonal(dim1=-2, dim2=-1).clamp(min=0)
        k = diag.argmax(-1, keepdim=True)
        col = torch.gather(B, -1, k.unsqueeze(-2).expand(B.shape[:-1] + (1,))).squeeze(-1)
        a = col / col.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        axis = torch.where(near_pi.unsqueeze(-1), a, axis)
    w = axis * theta.unsqueeze(-1)  # rotation vector (wx, wy, wz)
    # skew(p) has p = (K01, K02, K12) above the diagonal; K = [w]_x has K01 = -wz, K02 = wy, K12 = -wx.
    zero = (theta.abs() < 1e-12).unsqueeze(-1)
    p = torch.stack([-w[..., 2], w[..., 1], -w[..., 0]], -1)
    return torch.where(zero, torch.zeros_like(p), p)


def check_dimension(dim) -> int:
    if not is_int(dim) or dim not in DIMENSIONS:
        raise ConfigurationError(f"dimension must be 2 or 3, got {dim!r}")
    return int(dim)


def check_num_maps(n) -> int:
    if not is_int(n) or not 1 <= n <= MAX_MAPS:
        raise ConfigurationError(f"the number of maps must be an integer in 1..{MAX_MAPS}, got {n!r}")
    return int(n)


def check_s_max(s_max) -> float:
    if isinstance(s_max, bool) or not isinstance(s_max, (int, float)) or not math.isfinite(s_max) \
            or not 0 < s_max < 1:
        raise ConfigurationError(f"s_max must lie in (0, 1), got {s_max!r}")
    return float(s_max)


def num_map_parameters(dim: int) -> int:
    """Unconstrained parameters per map: two rotations, ``dim`` singular values, ``dim`` offsets."""
    return 2 * _n_skew(dim) + 2 * dim


def linear_parts(rot_u: torch.Tensor, rot_v: torch.Tensor, raw_sv: torch.Tensor, s_max: float, dim: int) -> torch.Tensor:
    """``U(rot_u) · diag(s_max · tanh(raw_sv)) · V(rot_v)ᵀ`` for any leading shape: contractive by construction."""
    U = rotation(rot_u, dim)
    V = rotation(rot_v, dim)
    return U @ torch.diag_embed(s_max * torch.tanh(raw_sv)) @ V.transpose(-1, -2)


def maps_from_parameters(params: torch.Tensor, dim: int, s_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A (..., N, d, d), t (..., N, d))`` from unconstrained ``params (..., N, num_map_parameters(dim))``."""
    k = _n_skew(dim)
    rot_u, rot_v, raw_sv, t = torch.split(params, [k, k, dim, dim], dim=-1)
    return linear_parts(rot_u, rot_v, raw_sv, s_max, dim), t


def det_probabilities(A: torch.Tensor) -> torch.Tensor:
    """``p_i ∝ |det A_i|``, floored at :data:`DET_FLOOR` of a uniform share, summing to 1."""
    d = torch.linalg.det(A).abs()
    n = A.shape[-3]
    total = d.sum(-1, keepdim=True)
    p = torch.where(total > 0, d / total.clamp(min=1e-30), torch.full_like(d, 1 / n))
    p = p.clamp(min=DET_FLOOR / n)
    return p / p.sum(-1, keepdim=True)


def largest_singular_values(A: torch.Tensor) -> torch.Tensor:
    """The spectral norm of every matrix in ``A (..., d, d)``."""
    return torch.linalg.matrix_norm(A.detach().double(), ord=2)


class IFS(nn.Module):
    """N contractive affine maps in ``dim`` dimensions with probabilities.

    ``forward()`` returns ``(A, t, p)``: linear parts ``(N, d, d)``, offsets ``(N, d)`` and
    probabilities ``(N,)``. ``probabilities="det"`` (default) gives ``p ∝ |det A_i|`` (floored),
    ``"softmax"`` learns logits. ``s_max`` bounds every map's largest singular value.
    """

    def __init__(self, num_maps: int, dim: int = 2, s_max: float = 0.95, probabilities: str = "det",
                 generator: torch.Generator | None = None, init_scale: float | None = None):
        super().__init__()
        self.num_maps = check_num_maps(num_maps)
        self.dim = check_dimension(dim)
        self.s_max = check_s_max(s_max)
        if probabilities not in PROBABILITY_MODES:
            raise ConfigurationError(f"probabilities must be one of {PROBABILITY_MODES}, got {probabilities!r}")
        if init_scale is None:
            init_scale = 0.6 * self.s_max
        if not (isinstance(init_scale, (int, float)) and 0 < init_scale < self.s_max):
            raise ConfigurationError(f"init_scale must lie in (0, s_max), got {init_scale!r}")
        self.probabilities = probabilities
        n, d, k = self.num_maps, self.dim, _n_skew(self.dim)
        g = generator
        self.rot_u = nn.Parameter(torch.rand(n, k, generator=g) * 2 * math.pi - math.pi)
        self.rot_v = nn.Parameter(torch.zeros(n, k))
        # singular values around init_scale, a little spread
        sv = init_scale * (1 + 0.2 * (torch.rand(n, d, generator=g) - 0.5))
        self.raw_sv = nn.Parameter(torch.atanh((sv / self.s_max).clamp(max=0.999)))
        # offsets: each map sends the unit box's centre to a random point of the box
        centre = torch.full((d,), 0.5)
        targets = torch.rand(n, d, generator=g) * 0.8 + 0.1
        with torch.no_grad():
            A = self._linear()
            self.offset = nn.Parameter(targets - A @ centre)
        self.logits = nn.Parameter(torch.zeros(n), requires_grad=probabilities == "softmax")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_maps(cls, A, t, p=None, s_max: float | None = None) -> "IFS":
        """An :class:`IFS` holding the given maps (``A (N, d, d)``, ``t (N, d)``, optional ``p``).

        Every ``A_i`` must have largest singular value < ``s_max`` (default: just above the
        largest one given, at most 0.999). With ``p`` the probabilities are learned logits
        (softmax mode) starting at ``log p``.
        """
        A = torch.as_tensor(A, dtype=torch.float64)
        t = torch.as_tensor(t, dtype=torch.float64)
        if A.dim() != 3 or A.shape[1] != A.shape[2] or t.shape != A.shape[:2]:
            raise ConfigurationError(f"maps must be A (N, d, d) and t (N, d), got {tuple(A.shape)} and {tuple(t.shape)}")
        if not bool(torch.isfinite(A).all() and torch.isfinite(t).all()):
            raise ConfigurationError("maps must hold finite numbers")
        n, d = A.shape[0], A.shape[1]
        bound = float(largest_singular_values(A).max())
        if s_max is None:
            s_max = min(0.999, max(0.5, bound * 1.02 + 1e-6))
        s_max = check_s_max(s_max)
        if bound >= s_max:
            raise ConfigurationError(f"a map has largest singular value {bound:.4f} >= s_max {s_max}; "
                                     "the IFS is not contractive enough")
        model = cls(n, d, s_max=s_max, probabilities="det" if p is None else "softmax")
        U, S, Vh = torch.linalg.svd(A)
        V = Vh.transpose(-1, -2)
        # Make U and V proper rotations, moving the reflections into the signs of the singular values.
        du = torch.sign(torch.linalg.det(U))
        dv = torch.sign(torch.linalg.det(V))
        U = U.clone(); V = V.clone(); S = S.clone()
        U[..., :, -1] *= du.unsqueeze(-1)
        V[..., :, -1] *= dv.unsqueeze(-1)
        S[..., -1] *= du * dv
        with torch.no_grad():
            model.rot_u.copy_(rotation_log(U).float())
            model.rot_v.copy_(rotation_log(V).float())
            model.raw_sv.copy_(torch.atanh(S / s_max).float())
            model.offset.copy_(t.float())
            if p is not None:
                p = check_probabilities(p, n)
                model.logits.copy_(torch.log(p.clamp(min=1e-12)).float())
        return model

    # ------------------------------------------------------------------ maps
    def singular_values(self) -> torch.Tensor:
        """Signed singular values ``(N, d)``, all of magnitude < ``s_max``."""
        return self.s_max * torch.tanh(self.raw_sv)

    def _linear(self) -> torch.Tensor:
        return linear_parts(self.rot_u, self.rot_v, self.raw_sv, self.s_max, self.dim)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        A = self._linear()
        if self.probabilities == "det":
            p = det_probabilities(A)
        else:
            p = torch.softmax(self.logits, 0)
        return A, self.offset, p

    def maps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, t, p)`` detached, float32."""
        with torch.no_grad():
            A, t, p = self()
        return A.detach().clone(), t.detach().clone(), p.detach().clone()

    def contraction_bound(self) -> float:
        """The largest singular value over all maps (measured, not the bound ``s_max``)."""
        A, _, _ = self.maps()
        return float(largest_singular_values(A).max())

    def collage(self, x: torch.Tensor) -> torch.Tensor:
        """``∪_i w_i(x)``: points ``(M, d)`` → ``(N·M, d)`` (map-major)."""
        A, t, _ = self()
        return apply_maps(A, t, x)


def apply_maps(A: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``∪_i (A_i x + t_i)`` for points ``x (M, d)``: ``(N·M, d)``, the images of map 0 first."""
    y = torch.einsum("nij,mj->nmi", A, x) + t[:, None, :]
    return y.reshape(-1, x.shape[-1])


def check_probabilities(p, n: int) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.shape != (n,) or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0:
        raise ConfigurationError(f"probabilities must be {n} finite non-negative numbers with a positive sum")
    return p / p.sum()


def check_maps(A, t, p=None, max_singular: float = 0.999) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate explicit maps; returns float64 ``(A, t, p)`` (``p`` ∝ |det| when not given).

    ConfigurationError for wrong shapes, a wrong dimension or count, non-finite numbers, or a map
    whose largest singular value is ``>= max_singular`` (not contractive).
    """
    A = torch.as_tensor(A, dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64)
    if A.dim() != 3 or A.shape[1] != A.shape[2]:
        raise ConfigurationError(f"A must have shape (N, d, d), got {tuple(A.shape)}")
    check_dimension(A.shape[1])
    check_num_maps(A.shape[0])
    if t.shape != A.shape[:2]:
        raise ConfigurationError(f"t must have shape {tuple(A.shape[:2])}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(A).all() and torch.isfinite(t).all()):
        raise ConfigurationError("maps must hold finite numbers")
    sv = largest_singular_values(A)
    worst = float(sv.max())
    if worst >= max_singular:
        raise ConfigurationError(f"map {int(sv.argmax())} is not contractive: largest singular value {worst:.4f} "
                                 f">= {max_singular}")
    p = det_probabilities(A) if p is None else check_probabilities(p, A.shape[0])
    return A, t, p
