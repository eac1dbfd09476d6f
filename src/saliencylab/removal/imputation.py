"""ROAD's noisy linear imputation (Rong et al. 2022; road/imputations.py, `NoisyLinearImputer`),
solved for all images and channels at once by conjugate gradients preconditioned with one
geometric multigrid V-cycle from MULTIGRID_FROM pixels per image, so that the number of
iterations does not grow with the holes, and by the Jacobi step (the diagonal) on smaller images,
where a V-cycle costs more than the iterations it saves.

The system (road/imputations.py 118-171, `setup_sparse_system`): for a removed pixel i,
    d_i v_i - sum_{removed j} w_ij v_j = sum_{kept j} w_ij x_j,
w the stencil weights of its in-image 8 neighbours (1/6 edge, 1/12 diagonal, line 94) and d_i
their sum (1 inside the image, less at the border). With some pixel kept the matrix A is
symmetric positive definite: a masked, Dirichlet-bounded discrete Laplacian, A ~ -(h²/3)Δ. The
channels of an image share A (same holes): one grid per image, the channels solved together.

Plain (Jacobi) conjugate gradients need O(L) iterations for holes L pixels wide: hundreds at
224x224. The V-cycle (Briggs, Henson & McCormick, "A Multigrid Tutorial", 2nd ed., ch. 3-4) damps
the smooth error on coarser grids instead: two Jacobi sweeps before and after each coarse
correction (the stencil's symbol lies in [-1/3, 1], so plain Jacobi damps every high frequency
by at least 3x; one sweep each way needed 4-5x more iterations), full-weighting restriction R
and bilinear prolongation P = Rᵀ between cell-centred grids, the same stencil re-discretised on
each coarse grid (a 2x coarser grid scales A by 4, which R's weights sum to, so no extra factor),
a coarse cell an unknown only where all its fine cells are, and the coarsest grid (at most
COARSEST cells) solved exactly by a dense Cholesky factorisation (8 Jacobi sweeps on a grid at
most 4 or 8 wide took 23 or 17 V-cycles at 224 px, 90% removed, where this takes 14). The
V-cycle is a fixed symmetric positive definite operator (tests/test_imputation.py checks it), so
it is a valid preconditioner for CG (Saad, "Iterative Methods for Sparse Linear Systems", 2nd
ed., §9.2).

Measured at 224x224, 90% removed in connected holes, 2 images x 3 channels, one thread, CPU time,
min of 3, on a 2-core CPU shared with other jobs (`benchmarks/bench_metrics.py --small
--imputer`): 14 V-cycles for a float64 relative residual of 1.6e-9 (the previous design: 23),
0.28 s against 1.16 s for scipy's spsolve per image, 4.2x (the previous design: 1.03 s against
1.29 s, 1.3x), largest difference 3.5e-8 of the [0, 1] range. The iterations do not grow
with the holes (11-12 V-cycles for a relative residual of 1e-6 at 32, 96 and 224 px, as in the
previous design); what is left is the cost of one V-cycle, 10-18 ms on 2x3x224x224: about 30
memory-bound elementwise passes of eager PyTorch over the fine grid (each 2-4x slower inside the
cycle than alone, on this shared CPU), against SuperLU's cache-friendly factorisation. The
previous design lost most of its time in `conv_transpose2d` (18 ms of a 45-ms V-cycle), which
the shifted-slice transfers replace.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Neighbour offsets and weights of road/imputations.py (line 94): 1/6 for the four edge
# neighbours, 1/12 for the four diagonal ones.
NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
              ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))
# As a 3x3 stencil that is (1/12)·[1,2,1]ᵀ[1,2,1] less 1/3 at the centre: W u = S u / 12 - u / 3,
# S applied separably by shifted adds (`_smooth`; 3-4x faster than a 1-channel conv2d on the CPU).
# The solution is accepted at a relative float64 residual of TOLERANCE / (H·W) (`_solve`): the
# error is at most |A⁻¹|·|r|, and A's smallest eigenvalue on a hole L pixels wide falls like 1/L²
# (A ~ -(h²/3)Δ), so the residual must shrink with the holes' area. That is 1.0e-7 at 28x28 and
# 1.6e-9 at 224x224.
TOLERANCE = 8e-5
INNER_TOLERANCE = 1e-5  # relative residual of each float32 correction
REFINEMENTS = 4  # float64 residuals at most (2-3 were used in our measurements)
MAX_ITERATIONS = 500  # per correction
COARSEST = 200  # cells of the coarsest grid at most (14x14 from 224x224), solved exactly (Cholesky)
SWEEPS = 2  # Jacobi sweeps before and after each coarse correction
# Pixels per image from which one V-cycle preconditions CG; below, the Jacobi step does: a V-cycle
# costs about 15 Jacobi steps, which pays only once holes are wide. Measured with
# benchmarks/bench_imputer.py (32 images x 1 channel, one thread, min of 3 of process time,
# multigrid / Jacobi time, on a shared CPU, before the coarse mask of `v_cycle`, which adds one
# coarse-grid multiply per level): connected holes (a smooth ranking) 50% / 90% removed: 3.21 /
# 2.06 at 28 px, 0.93 / 0.60 at 48, 0.62 / 0.34 at 64, 0.39 / 0.22 at 96, 0.27 / 0.11 at 128;
# scattered holes (a random ranking): Jacobi faster at every size up to 128 (5.65 / 3.17 at 28,
# 2.86 / 1.80 at 48, 2.01 / 1.27 at 64, 1.80 / 1.10 at 128). From 64 px the V-cycle wins clearly
# on connected holes (where Jacobi CG's iterations grow) and loses less on scattered ones.
MULTIGRID_FROM = 64 * 64
IMAGES_PER_SOLVE = 256  # bounds the memory of one solve


class _Grid:
    """One level: which pixels are unknowns (`inside`, float 0/1, [N,1,h,w], shared by the
    channels, which the vectors [N,C,h,w] carry), the stencil sums `d` [1,1,h,w], and either the
    coarser level or, at the coarsest, the Cholesky factor of the level's matrix."""

    def __init__(self, inside: Tensor, coarsen: bool = True):
        self.inside = inside
        h, w = inside.shape[2:]
        self.d = _neighbours(torch.ones(1, 1, h, w, dtype=inside.dtype, device=inside.device))
        self.inverse = inside / self.d  # D⁻¹ on the unknowns
        # A u = inside·(d u - W u) = inside·(d + 1/3)·u - (inside/12)·S u
        self.diagonal, self.weight = inside * (self.d + 1 / 3), inside / 12
        # a Jacobi sweep e + D⁻¹(r - A e) = D⁻¹r + inside/(12 d)·(S e - 4 e) for e zero off the
        # unknowns (`jacobi`)
        self.sweep = self.weight / self.d
        self.coarse = self.factor = None
        if coarsen and h * w > COARSEST:
            self.coarse = _Grid(_coarse_unknowns(inside))
        elif coarsen:
            self.factor = self._cholesky()

    def _cholesky(self) -> Tensor:
        """The level's matrix, dense [N, hw, hw] (the identity on known cells), factorised."""
        n, _, h, w = self.inside.shape
        unit = torch.eye(h * w, dtype=self.inside.dtype, device=self.inside.device)
        columns = self.apply(self.inside * unit.view(1, h * w, h, w)).view(n, h * w, h * w)
        return torch.linalg.cholesky(columns + torch.diag_embed(1 - self.inside.view(n, h * w)))

    def apply(self, u: Tensor) -> Tensor:
        """A u for u zero off the unknowns (every vector of the solver is)."""
        return (self.diagonal * u).addcmul_(self.weight, _smooth(u), value=-1)

    def jacobi(self, e: Tensor, start: Tensor) -> Tensor:
        """One Jacobi sweep from e; `start` is D⁻¹r, the sweep from 0."""
        return torch.addcmul(start, self.sweep, _smooth(e).sub_(e, alpha=4))

    def precondition(self, r: Tensor) -> Tensor:
        """M⁻¹ r: one V-cycle on a grid with coarser levels, the Jacobi step (diagonal) on one
        without."""
        return self.v_cycle(r) if self.coarse is not None else self.inverse * r

    def v_cycle(self, r: Tensor) -> Tensor:
        """An approximate solution of A e = r: one symmetric V-cycle from e = 0, exact on the
        coarsest level."""
        if self.coarse is None:
            n, c, h, w = r.shape
            e = torch.cholesky_solve(r.reshape(n, c, h * w).mT, self.factor)
            return self.inside * e.mT.reshape(n, c, h, w)
        start = self.inverse * r
        e = start
        for _ in range(SWEEPS - 1):
            e = self.jacobi(e, start)
        residual = torch.addcmul(r, self.diagonal, e, value=-1).addcmul_(self.weight, _smooth(e))
        # R restricted to the coarse unknowns, the transpose of P followed by the fine mask:
        # without the coarse mask the known coarse cells' residual leaks into the next level's
        # restriction and the V-cycle is not symmetric
        coarse = self.coarse.v_cycle(self.coarse.inside * _restrict(residual))
        e = e.addcmul_(self.inside, _prolong(coarse, r.shape[2:]), value=1 / 16)
        for _ in range(SWEEPS):
            e = self.jacobi(e, start)
        return e


def _coarse_unknowns(inside: Tensor) -> Tensor:
    """A coarse cell is an unknown only when all its fine cells are: a kept pixel keeps its
    coarse cell known, so no coarse grid loses the values that pin the solution (making it an
    unknown when any fine cell is took 2-3x more iterations)."""
    return -F.max_pool2d(-inside, 2, ceil_mode=True)


def _smooth(u: Tensor, border: str = "constant") -> Tensor:
    """S u: [1,2,1] along rows, then along columns, u zero outside the image (or replicated
    there, border="replicate")."""
    p = F.pad(u, (1, 1, 1, 1), mode=border)
    rows = (p[:, :, :-2] + p[:, :, 2:]).add_(p[:, :, 1:-1], alpha=2)
    return (rows[..., :-2] + rows[..., 2:]).add_(rows[..., 1:-1], alpha=2)


def _neighbours(u: Tensor) -> Tensor:
    """W u: the weighted sum of each pixel's in-image neighbours."""
    return (_smooth(u) / 12).sub_(u, alpha=1 / 3)


# Transfers between a grid and the 2x coarser one (cell-centred). In 1-D, linear interpolation P
# gives fine cell 2i 3/4 c_i + 1/4 c_(i-1) and fine cell 2i+1 3/4 c_i + 1/4 c_(i+1), c replicated
# past the image border (where the system has no boundary values, so a constant must interpolate
# to itself): that is [1,2,1]/4 applied to c repeated twice, since (c_(i-1) + 2c_i + c_i)/4 =
# 3/4 c_i + 1/4 c_(i-1). Its transpose, full weighting R = Pᵀ, gathers [1,3,3,1]/4 = [1,1]∗[1,2,1]/4
# of fine cells 2i-1 .. 2i+2: [1,2,1]/4 (replicated at the border), then the sum of each pair.
# In 2-D both are separable: P c = S(c repeated 2x2)/16 and R r = (sums of 2x2 blocks of S r)/16,
# S replicating at the border; odd grids are extended by a cell of zero residual.
def _prolong(e: Tensor, shape: tuple[int, int]) -> Tensor:
    """16·P e: coarse e [N,C,h',w'] on the fine grid `shape` (the caller scales by 1/16)."""
    h, w = shape
    repeated = F.interpolate(e, scale_factor=2, mode="nearest")  # 2x faster than expand/reshape
    return _smooth(repeated, "replicate")[:, :, :h, :w]


def _restrict(r: Tensor) -> Tensor:
    """R r = Pᵀ r (full weighting, weights summing to 4 per coarse cell)."""
    h, w = r.shape[2:]
    s = _smooth(F.pad(r, (0, w % 2, 0, h % 2)) if h % 2 or w % 2 else r, "replicate")
    n, c, h2, w2 = s.shape
    # sums of 2x2 blocks: rows by pairs, then columns (6x faster than avg_pool2d)
    pairs = s.view(n, c, h2 // 2, 2, w2)
    rows = pairs[:, :, :, 0] + pairs[:, :, :, 1]
    columns = rows.view(n, c, h2 // 2, w2 // 2, 2)
    return (columns[..., 0] + columns[..., 1]).mul_(1 / 16)


def linear_impute(x: Tensor, mask: Tensor) -> Tensor:
    """The noiseless solution of ROAD's linear system (module docstring) for every image and
    channel of x [N,C,H,W] (raw pixels), mask bool [N,1,H,W] (True = removed), in chunks of
    images, to a float64 relative residual of TOLERANCE / (H·W); against scipy's spsolve of the
    same system the largest difference measured is in docs/protocols.md §4. An image with every
    pixel removed has no known value to spread: it gets its own mean instead."""
    return torch.cat([_solve(x[i:i + IMAGES_PER_SOLVE], mask[i:i + IMAGES_PER_SOLVE])
                      for i in range(0, len(x), IMAGES_PER_SOLVE)]) if len(x) else x.clone()


def _solve(x: Tensor, mask: Tensor) -> Tensor:
    """Iterative refinement (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
    ch. 12): the residual of the float64 solution is computed in float64 and the correction is
    solved in float32 (where the work is) to `INNER_TOLERANCE`, until the float64 residual is
    below TOLERANCE / (H·W). The system is built once; only the preconditioner depends on the
    size (`MULTIGRID_FROM`). float32 alone stalls near a relative residual of 1e-6 on 224x224
    images with large holes, which leaves errors near 1e-4 of the pixel range."""
    h, w = x.shape[2:]
    v = x.detach().to(torch.float64)
    removed = mask.to(torch.float32)
    everything = removed.flatten(1).all(1)
    grid = _Grid(removed * (~everything).to(torch.float32).view(-1, 1, 1, 1),
                 coarsen=h * w >= MULTIGRID_FROM)
    exact = _Grid(grid.inside.double(), coarsen=False)
    b = exact.inside * _neighbours((1 - exact.inside) * v)
    stop = TOLERANCE / (h * w) * _norm(b)
    u = torch.zeros_like(b)
    for _ in range(REFINEMENTS):
        r = b - exact.apply(u)
        r = torch.where(_norm(r) > stop, r, 0)
        if not bool(r.any()):
            break
        u = u + _preconditioned_cg(grid, r.float(), stop.float() / 2).double()
    mean = v.flatten(2).mean(2)[..., None, None]
    out = torch.where(grid.inside > 0, u, v)
    out = torch.where(everything.view(-1, 1, 1, 1) & (removed > 0), mean, out)
    return out.to(x.dtype)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """The inner product of each image and channel, [N,C,1,1]."""
    return torch.linalg.vecdot(a.flatten(2), b.flatten(2))[..., None, None]


def _norm(a: Tensor) -> Tensor:
    return a.flatten(2).norm(dim=2)[..., None, None]


def _preconditioned_cg(grid: _Grid, b: Tensor, floor: Tensor) -> Tensor:
    """Conjugate gradients on A u = b for every image and channel at once, preconditioned by
    `grid.precondition` (Saad §9.2.1, algorithm 9.1), from u = M⁻¹b (one preconditioned step: as
    many iterations as from u = 0 at 224 px, the same at 28); a row stops changing once its
    residual is below max(INNER_TOLERANCE·|b|, floor)."""
    u = grid.precondition(b)
    r = b - grid.apply(u)
    z = grid.precondition(r)
    p, rz = z, _dot(r, z)
    stop = torch.maximum(INNER_TOLERANCE * _norm(b), floor) ** 2
    for _ in range(MAX_ITERATIONS):
        active = (_dot(r, r) > stop).to(b.dtype)
        if not bool(active.any()):
            break
        ap = grid.apply(p)
        alpha = active * rz / _dot(p, ap).clamp(min=1e-30)
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        z = grid.precondition(r)
        rz_next = _dot(r, z)
        p = z.addcmul_(rz_next / rz.clamp(min=1e-30), p)
        rz = rz_next
    return u
