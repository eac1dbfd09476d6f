"""Training objectives `loss(model, x, y, idx) -> Tensor` (the `training.Objective` signature):
Traditional (cross-entropy), SGT (Ismail et al. 2021) and SMOOT.

SGT / SMOOT loss:  CE(f(x), y) + λ · KL(softmax f(x) ‖ softmax f(x̃)),
x̃ = x with its K lowest-saliency pixels replaced by random values.

Defaults follow the SGT authors' code (ayaabdelsalam91/saliency_guided_training, Scripts/):
- λ = 1: the KL term is added unweighted (interpretable.py line 117 `loss = loss + KLloss`).
- Saliency (interpretable.py lines 64-69): the model in eval mode (no dropout), Captum's
  `Saliency(model).attribute(data, target, abs=False)` of the model's output, which is
  log_softmax (cnn.py line 28): the signed gradient of log p(label) w.r.t. the input, averaged
  over channels; the lowest values are masked (`topk(largest=False)`, line 76). Here channels
  are summed (the same ranking) and masks are per pixel. `saliency_output=logit`,
  `saliency_pass=shared` (reuse the training forward, train mode, cheaper) and `saliency=abs`
  are options.
- KL direction: KLDivLoss(input=log p̃, target=log p) = KL(p ‖ p̃), batch mean (line 109); the
  gradient flows through both f(x) and f(x̃); x̃ is detached (line 94).
- Fill: uniform within [min, max] of the image's *remaining* pixels (the SMOOT paper's text,
  the default), or of the *whole* image (`fill=uniform_image`: their code with --RandomMasking, lines
  80-85, which their README uses for SGT).

SMOOT keeps one K per training image. The paper's text calls K a percentage but its tables only
fit a pixel count (MNIST: 392 of 784 at the start; min 234, median 388, max 544 at the end;
234, 544 or 753 are no integer percent of 784), so by default (`k_unit=pixels`) K starts at
⌊k_init% · HW⌋ pixels, moves by ⌊μ·δ⌋ pixels and stays within ⌊k_min% · HW⌋..⌊k_max% · HW⌋
(floor, like the SGT authors' `int(p * HW)`). `k_unit=percent` keeps K in integer percent,
which moves it HW/100 times faster (7.84x on MNIST). At each step:
1. x̃ is built with the image's *current* K (from the last time the image was seen);
2. then K is updated for the next time:
     rank the classes c1, c2, ... by the unmasked output f(x) (descending),
     δ1 = p̃[c1] − p[c1],  δ2 = mean_{i=2..n} (p̃[ci] − p[ci]),
     δ  = α·δ1 + (1−α)·δ2,  K ← clip(K + ⌊μ·δ⌋, Kmin, Kmax).
K lives in `state_dict()`, saved with the model, so a resumed run continues with the same K.

The paper's text allows other readings of step 2 (issue 19; docs/protocols.md, "SMOOT's K"),
each an option, the literal one the default: `k_rounding` floor (⌊·⌋) | round | trunc
(toward zero), `k_delta` per image | batch (one δ, the batch mean, for all its images), and
`k_rank` clean (classes ranked by p) | masked (by p̃). Each epoch's δ and K steps are
summarised by `SMOOT.epoch_summary`, which the sgt protocol logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attribution.base import explained_score
from ..core.checks import added, check, check_choice, renamed
from ..core.device import generator
from ..removal import count_removed, fill, mask_first
from .loop import cross_entropy

OBJECTIVES: tuple[str, ...] = ("traditional", "sgt", "smoot")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Hyper-parameters of SGT and SMOOT (defaults: the papers' values and the authors' code)."""

    lam: float = 1.0  # λ, weight of the KL term (SGT code: 1)
    k: float = 50.0  # SGT: percent of the pixels masked
    k_unit: str = "pixels"  # SMOOT's K: pixels (the paper's tables) | percent
    alpha: float = 0.95  # SMOOT α (0.95 MNIST/Fashion-MNIST, 0.8 CIFAR)
    mu: float = 10.0  # SMOOT μ
    n: int = 5  # SMOOT: classes c1..cn in δ
    k_min: int = 20  # SMOOT Kmin, percent of the pixels
    k_max: int = 80  # SMOOT Kmax, percent of the pixels
    k_init: int = 50  # SMOOT initial K, percent of the pixels
    saliency: str = "signed"  # signed | abs: the values ranked (lowest masked)
    target: str = "label"  # label | predicted: the class whose score is differentiated
    saliency_output: str = "log_softmax"  # log_softmax (the authors' model output) | logit
    saliency_pass: str = "eval"  # eval (the authors': a separate eval-mode pass) | shared
    # uniform: within the remaining pixels' range (the SMOOT paper) | uniform_image: within the
    # whole image's (the authors' --RandomMasking), fills of removal.FILLS; once remaining | image
    fill: str = renamed("uniform", "fill", {"remaining": "uniform", "image": "uniform_image"})
    # readings of SMOOT's K update (issue 19), the literal ones by default
    k_rounding: str = added("floor")  # floor | round | trunc: μ·δ to a whole step
    k_delta: str = added("image")  # image | batch: one δ per image, or the batch's mean
    k_rank: str = added("clean")  # clean | masked: the softmax that ranks c1..cn

    def validate(self) -> None:
        check(self.lam >= 0, "objective.lam must be >= 0")
        check(0 <= self.k <= 100, "objective.k must lie in [0, 100] (percent masked)")
        check_choice(self.k_unit, ("pixels", "percent"), "objective.k_unit")
        check(0 <= self.alpha <= 1, "objective.alpha must lie in [0, 1]")
        check(self.n >= 2, "objective.n must be >= 2 (δ2 averages classes c2..cn)")
        check(0 <= self.k_min <= self.k_max <= 100,
              "objective.k_min and k_max must satisfy 0 <= k_min <= k_max <= 100")
        check(self.k_min <= self.k_init <= self.k_max, "objective.k_init must lie in [k_min, k_max]")
        check_choice(self.saliency, ("signed", "abs"), "objective.saliency")
        check_choice(self.target, ("label", "predicted"), "objective.target")
        check_choice(self.saliency_output, ("log_softmax", "logit"), "objective.saliency_output")
        check_choice(self.saliency_pass, ("eval", "shared"), "objective.saliency_pass")
        check_choice(self.fill, ("uniform", "uniform_image"), "objective.fill")
        check_choice(self.k_rounding, tuple(ROUNDINGS), "objective.k_rounding")
        check_choice(self.k_delta, ("image", "batch"), "objective.k_delta")
        check_choice(self.k_rank, ("clean", "masked"), "objective.k_rank")


ROUNDINGS = {"floor": torch.floor, "round": torch.round, "trunc": torch.trunc}


def lowest_mask(s: Tensor, counts) -> Tensor:
    """Mask (True = replace) of the `counts` lowest-valued pixels of each saliency map
    s [B,1,H,W]; `counts` is one number or one per image [B]. Ties keep pixel order."""
    order = torch.argsort(s.detach().flatten(1).float(), dim=1, stable=True)  # lowest first
    return mask_first(order, counts, s.shape[2:])


def smoot_delta(p: Tensor, p_masked: Tensor, alpha: float, n: int, rank: str = "clean") -> Tensor:
    """δ = α·δ1 + (1−α)·δ2 per image, classes ranked by the unmasked p (`rank=clean`) or by
    the masked p̃ (`masked`) (float64)."""
    p, p_masked = p.double(), p_masked.double()
    top = (p if rank == "clean" else p_masked).argsort(dim=1, descending=True, stable=True)[:, :n]
    diff = (p_masked - p).gather(1, top)  # p̃[ci] − p[ci], i = 1..n
    return alpha * diff[:, 0] + (1 - alpha) * diff[:, 1:].mean(1)


def smoot_step(delta: Tensor, mu: float, rounding: str = "floor") -> Tensor:
    """The step of K: ⌊μ·δ⌋ (`floor`), μ·δ rounded to the nearest (`round`, halves to even) or
    truncated toward zero (`trunc`)."""
    return ROUNDINGS[rounding](mu * delta.double()).long()


def smoot_update(k: Tensor, delta: Tensor, mu: float, k_min: int, k_max: int,
                 rounding: str = "floor") -> Tensor:
    """K ← clip(K + ⌊μ·δ⌋, Kmin, Kmax) (or the step `rounding` gives), in K's own unit (pixels
    or percent)."""
    return (k.long() + smoot_step(delta, mu, rounding)).clamp(k_min, k_max).to(k.dtype)


class Traditional:
    """Plain cross-entropy (λ = 0)."""

    name = "traditional"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        return cross_entropy(model, x, y, idx)

    def reseed(self, seed: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class SGT(Traditional):
    """Saliency-guided training with a fixed k% of masked pixels (Ismail et al. 2021)."""

    name = "sgt"

    def __init__(self, cfg: ObjectiveConfig, seed: int = 0):
        cfg.validate()
        self.cfg = cfg
        # The fill noise has its own generator (on the images' device), so the global stream
        # (dropout) is the same as in a Traditional run: with λ = 0, SGT trains like Traditional.
        self.seed = 0
        self.generators: dict[str, torch.Generator] = {}
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.seed = int(seed) + 7919
        self.generators.clear()

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.generators:
            self.generators[key] = generator(device, self.seed)
        return self.generators[key]

    def counts(self, idx: Tensor, pixels: int) -> Tensor:
        """Pixels to mask per image of the batch."""
        return count_removed(self.cfg.k, pixels).expand(len(idx))

    def saliency(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Logits f(x) (with graph, for the loss) and the saliency map [B,1,H,W] (detached)."""
        cfg = self.cfg
        if cfg.saliency_pass == "eval":
            logits = model(x)
            was_training = model.training
            model.eval()
            try:
                with torch.enable_grad():
                    xe = x.detach().requires_grad_(True)
                    out = model(xe)
                    target = y if cfg.target == "label" else out.argmax(1)
                    score = explained_score(out, cfg.saliency_output).gather(1, target[:, None])
                    (g,) = torch.autograd.grad(score.sum(), xe)
            finally:
                model.train(was_training)
        else:
            x = x.detach().requires_grad_(True)
            logits = model(x)
            target = y if cfg.target == "label" else logits.argmax(1)
            score = explained_score(logits, cfg.saliency_output).gather(1, target[:, None])
            (g,) = torch.autograd.grad(score.sum(), x, retain_graph=True)
        s = g.detach().float().sum(1, keepdim=True)
        return logits, (s.abs() if cfg.saliency == "abs" else s)

    def masked_input(self, x: Tensor, s: Tensor, counts) -> Tensor:
        mask = lowest_mask(s, counts)
        x_float = x.detach().float()
        generator = self.generator(x.device)
        masked = fill(x_float, mask, self.cfg.fill, generator=generator)
        return masked.to(x.dtype)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        logits, s = self.saliency(model, x, y)
        x_masked = self.masked_input(x, s, self.counts(idx, x.shape[2] * x.shape[3]))
        masked_logits = model(x_masked)
        logits, masked_logits = logits.float(), masked_logits.float()
        # KL(p ‖ p̃) = Σ p (log p − log p̃), batch mean (SGT code: KLDivLoss(log p̃, log p))
        kl = F.kl_div(F.log_softmax(masked_logits, 1), F.log_softmax(logits, 1),
                      reduction="batchmean", log_target=True)
        self.after_forward(idx, logits, masked_logits)
        return F.cross_entropy(logits, y) + self.cfg.lam * kl

    def after_forward(self, idx: Tensor, logits: Tensor, masked_logits: Tensor) -> None:
        pass

    def k_stats(self, pixels: int) -> dict:
        k = float(count_removed(self.cfg.k, pixels))
        return {"k_min": k, "k_median": k, "k_max": k}


class SMOOT(SGT):
    """SGT with a per-training-image K, optimised online (see the module docstring)."""

    name = "smoot"

    def __init__(self, cfg: ObjectiveConfig, n_train: int, classes: int, pixels: int, seed: int = 0):
        super().__init__(cfg, seed)
        check(cfg.n <= classes, f"objective.n = {cfg.n} exceeds the {classes} classes")
        self.pixels = pixels
        unit = (lambda p: int(count_removed(p, pixels))) if cfg.k_unit == "pixels" else int
        self.k_min, self.k_max = unit(cfg.k_min), unit(cfg.k_max)
        self.K = torch.full((n_train,), unit(cfg.k_init), dtype=torch.int32)
        self.deltas: list[Tensor] = []  # this epoch's δ and steps, for epoch_summary
        self.steps: list[Tensor] = []

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self.deltas, self.steps = [], []  # reseeded at the start of every epoch

    def counts(self, idx: Tensor, pixels: int) -> Tensor:
        """This step masks with the K from the last time each image was seen."""
        self.K = self.K.to(idx.device)
        k = self.K[idx]
        return k if self.cfg.k_unit == "pixels" else count_removed(k.cpu(), pixels).to(idx.device)

    @torch.no_grad()
    def after_forward(self, idx: Tensor, logits: Tensor, masked_logits: Tensor) -> None:
        cfg = self.cfg
        delta = smoot_delta(logits.softmax(1), masked_logits.softmax(1), cfg.alpha, cfg.n,
                            cfg.k_rank)
        if cfg.k_delta == "batch":
            delta = delta.mean().expand(len(idx))
        k = self.K[idx]
        self.K[idx] = smoot_update(k, delta, cfg.mu, self.k_min, self.k_max, cfg.k_rounding)
        self.deltas.append(delta.float())
        self.steps.append((self.K[idx] - k).to(torch.int16))  # the step after clipping

    def epoch_summary(self) -> str:
        """This epoch's δ (quantiles) and K steps (how many images stepped down, stayed, rose)."""
        if not self.deltas:
            return "no SMOOT steps this epoch"
        delta, step = torch.cat(self.deltas).cpu(), torch.cat(self.steps).cpu()
        q = torch.quantile(delta, torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])).tolist()
        share = lambda ok: 100 * float(ok.float().mean())  # noqa: E731
        return (f"SMOOT delta min/p10/median/p90/max {q[0]:+.3f}/{q[1]:+.3f}/{q[2]:+.4f}/"
                f"{q[3]:+.3f}/{q[4]:+.3f}, mean {float(delta.mean()):+.4f}; K step <0 "
                f"{share(step < 0):.1f}%, 0 {share(step == 0):.1f}%, >0 {share(step > 0):.1f}%, "
                f"mean {float(step.double().mean()):+.3f}")

    def state_dict(self) -> dict:
        return {"K": self.K.cpu().clone(), "k_unit": self.cfg.k_unit}

    def load_state_dict(self, state: dict) -> None:
        K = state["K"]
        check(K.shape == self.K.shape, f"saved SMOOT K has {K.shape[0]} entries, "
              f"the train set {self.K.shape[0]}: resume with the same data")
        self.K = K.to(torch.int32).clone()

    def k_pixels(self) -> Tensor:
        """K of every training image in pixels (whatever the unit it moves in)."""
        k = self.K.cpu()
        return k if self.cfg.k_unit == "pixels" else count_removed(k, self.pixels)

    def k_stats(self, pixels: int) -> dict:
        k = self.k_pixels().double()
        return {"k_min": float(k.min()), "k_median": float(k.median()), "k_max": float(k.max())}


def make_objective(name: str, cfg: ObjectiveConfig, n_train: int, classes: int, pixels: int,
                   seed: int = 0):
    check_choice(name, OBJECTIVES, "objective")
    if name == "traditional":
        return Traditional()
    if name == "sgt":
        return SGT(cfg, seed)
    return SMOOT(cfg, n_train, classes, pixels, seed)


def k_stats_of(objective, pixels: int) -> dict:
    """Min/median/max K in pixels over the training images: SMOOT's K, SGT's fixed k, none
    (NaN) for Traditional."""
    if isinstance(objective, SGT):
        return objective.k_stats(pixels)
    nan = float("nan")
    return {"k_min": nan, "k_median": nan, "k_max": nan}
