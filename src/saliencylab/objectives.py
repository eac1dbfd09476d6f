"""Training objectives `loss(model, x, y, idx) -> Tensor` (the `training.Objective` signature):
Traditional (cross-entropy), SGT (Ismail et al. 2021) and SMOOT (DESIGN.md §2).

SGT / SMOOT loss:  CE(f(x), y) + λ · KL(softmax f(x) ‖ softmax f(x̃)),
x̃ = x with its k lowest-saliency features replaced by values drawn uniformly within
[min, max] of the image's remaining pixels (`masking.fill_uniform_in_range`).

Conventions, following the authors' SGT code (ayaabdelsalam91/saliency_guided_training,
Scripts/interpretable.py and train_MNIST.py):
- λ = 1: the code adds the KL term unweighted (`loss = Modelloss + KLloss`).
- Saliency = gradient of the *true label's* logit w.r.t. the input, *signed* by default
  (`Saliency(model).attribute(data, target, abs=False)`, `--abs` is an option), averaged
  over channels; the k features with the *lowest* values are masked (`topk(largest=False)`).
  Here channels are summed (same ranking as the mean) and masks are per pixel.
- KL direction: KLDivLoss(input=log p̃, target=log p) = KL(p ‖ p̃), batch mean, and the
  gradient flows through *both* f(x) and f(x̃) (neither output is detached); x̃ itself is
  detached (`maskedInputs = tempData.view(...).detach()`).
- Fill range: the authors' code draws within [min, max] of the whole image; DESIGN.md
  takes the range of the *remaining* pixels, which is what we do.

Speed (the one deliberate difference from that code): the authors compute the saliency in a
separate eval-mode pass (Captum). By default (`saliency_pass="shared"`) we reuse the training
forward: one forward of x with requires_grad, `torch.autograd.grad(target logits, x,
retain_graph=True)` for the saliency, the same logits for CE, then one forward of x̃. That
keeps a step within ~2x a plain step (benchmarks/bench_sgt_step.py). The saliency then sees
the train-mode network (dropout active). `saliency_pass="eval"` reproduces the authors'
separate eval-mode pass at the cost of one more forward and input-backward.

SMOOT keeps one K (percent, an integer) per training image, initially `k_init`. At each step:
1. x̃ is built with the image's *current* K (the K from the last time the image was seen);
2. then K is updated for the next time the image is seen (the SMOOT paper: the mask
   percentage is optimised online, image by image):
     rank the classes c1, c2, ... by the unmasked output f(x) (descending),
     δ1 = p̃[c1] − p[c1],  δ2 = mean_{i=2..n} (p̃[ci] − p[ci]),
     δ  = α·δ1 + (1−α)·δ2,  K ← clip(K + ⌊μ·δ⌋, Kmin, Kmax).
   p and p̃ are the softmax outputs of the same training forward passes used by the loss.
K lives in `state_dict()`, saved with the model, so a resumed run continues with the same K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import check, check_choice
from .masking import fill_uniform_in_range, removal_mask

OBJECTIVES: tuple[str, ...] = ("traditional", "sgt", "smoot")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Hyper-parameters of SGT and SMOOT (defaults: the papers' values, DESIGN.md §2)."""

    lam: float = 1.0  # λ, weight of the KL term (SGT code: 1)
    k: float = 50.0  # SGT: percent of features masked
    alpha: float = 0.95  # SMOOT α (0.95 MNIST/Fashion-MNIST, 0.8 CIFAR)
    mu: float = 10.0  # SMOOT μ
    n: int = 5  # SMOOT: classes c1..cn in δ
    k_min: int = 20  # SMOOT Kmin (percent)
    k_max: int = 80  # SMOOT Kmax (percent)
    k_init: int = 50  # SMOOT initial K (percent)
    saliency: str = "signed"  # signed | abs: gradient used to rank features for masking
    target: str = "label"  # label | predicted: the logit whose gradient is the saliency
    saliency_pass: str = "shared"  # shared (reuse the training forward) | eval (authors' code)

    def validate(self) -> None:
        check(self.lam >= 0, "objective.lam must be >= 0")
        check(0 <= self.k <= 100, "objective.k must lie in [0, 100] (percent masked)")
        check(0 <= self.alpha <= 1, "objective.alpha must lie in [0, 1]")
        check(self.n >= 2, "objective.n must be >= 2 (δ2 averages classes c2..cn)")
        check(0 <= self.k_min <= self.k_max <= 100,
              "objective.k_min and k_max must satisfy 0 <= k_min <= k_max <= 100")
        check(self.k_min <= self.k_init <= self.k_max, "objective.k_init must lie in [k_min, k_max]")
        check(self.saliency in ("signed", "abs"), "objective.saliency must be signed or abs")
        check(self.target in ("label", "predicted"), "objective.target must be label or predicted")
        check(self.saliency_pass in ("shared", "eval"), "objective.saliency_pass must be shared or eval")


def lowest_mask(s: Tensor, percent: Tensor | float) -> Tensor:
    """Mask (True = replace) of the ⌊percent·HW/100⌋ lowest-valued pixels of each saliency map
    s [B,1,H,W]; `percent` is a number or a per-image tensor [B]. Ties keep pixel order."""
    order = torch.argsort(s.detach().flatten(1).float(), dim=1, stable=True)  # lowest first
    return removal_mask(order, percent, s.shape[2:])


def smoot_delta(p: Tensor, p_masked: Tensor, alpha: float, n: int) -> Tensor:
    """δ = α·δ1 + (1−α)·δ2 per image, classes ranked by the unmasked p (float64)."""
    p, p_masked = p.double(), p_masked.double()
    top = p.argsort(dim=1, descending=True, stable=True)[:, :n]
    diff = (p_masked - p).gather(1, top)  # p̃[ci] − p[ci], i = 1..n
    return alpha * diff[:, 0] + (1 - alpha) * diff[:, 1:].mean(1)


def smoot_update(k: Tensor, delta: Tensor, mu: float, k_min: int, k_max: int) -> Tensor:
    """K ← clip(K + ⌊μ·δ⌋, Kmin, Kmax), integer percent."""
    step = torch.floor(mu * delta.double()).long()
    return (k.long() + step).clamp(k_min, k_max).to(k.dtype)


class Traditional:
    """Plain cross-entropy (λ = 0)."""

    name = "traditional"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y)

    def reseed(self, seed: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class SGT(Traditional):
    """Saliency-guided training with a fixed k% of masked features (Ismail et al. 2021)."""

    name = "sgt"

    def __init__(self, cfg: ObjectiveConfig, seed: int = 0):
        cfg.validate()
        self.cfg = cfg
        # The fill noise has its own generator, so the global stream (dropout) is the same as
        # in a Traditional run: with λ = 0, SGT then trains exactly like Traditional.
        self.generator = torch.Generator()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed) + 7919)

    def percent(self, idx: Tensor) -> Tensor | float:
        return self.cfg.k

    def saliency(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Logits f(x) (with graph, for the loss) and the saliency map [B,1,H,W] (detached)."""
        cfg = self.cfg
        if cfg.saliency_pass == "eval":
            logits = model(x)
            was_training = model.training
            model.eval()
            with torch.enable_grad():
                xe = x.detach().requires_grad_(True)
                out = model(xe)
                target = y if cfg.target == "label" else out.argmax(1)
                (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xe)
            model.train(was_training)
        else:
            x = x.detach().requires_grad_(True)
            logits = model(x)
            target = y if cfg.target == "label" else logits.argmax(1)
            (g,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x,
                                       retain_graph=True)
        s = g.detach().float().sum(1, keepdim=True)
        return logits, (s.abs() if cfg.saliency == "abs" else s)

    def masked_input(self, x: Tensor, s: Tensor, percent) -> Tensor:
        mask = lowest_mask(s, percent)
        return fill_uniform_in_range(x.detach().float(), mask, self.generator).to(x.dtype)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        logits, s = self.saliency(model, x, y)
        x_masked = self.masked_input(x, s, self.percent(idx))
        masked_logits = model(x_masked)
        logits, masked_logits = logits.float(), masked_logits.float()
        # KL(p ‖ p̃) = Σ p (log p − log p̃), batch mean (SGT code: KLDivLoss(log p̃, log p))
        kl = F.kl_div(F.log_softmax(masked_logits, 1), F.log_softmax(logits, 1),
                      reduction="batchmean", log_target=True)
        self.after_forward(idx, logits, masked_logits)
        return F.cross_entropy(logits, y) + self.cfg.lam * kl

    def after_forward(self, idx: Tensor, logits: Tensor, masked_logits: Tensor) -> None:
        pass


class SMOOT(SGT):
    """SGT with a per-training-image K, optimised online (DESIGN.md §2)."""

    name = "smoot"

    def __init__(self, cfg: ObjectiveConfig, n_train: int, classes: int, seed: int = 0):
        super().__init__(cfg, seed)
        check(cfg.n <= classes, f"objective.n = {cfg.n} exceeds the {classes} classes")
        self.K = torch.full((n_train,), cfg.k_init, dtype=torch.int16)

    def percent(self, idx: Tensor) -> Tensor:
        return self.K[idx]  # this step masks with the K from the last time the image was seen

    @torch.no_grad()
    def after_forward(self, idx: Tensor, logits: Tensor, masked_logits: Tensor) -> None:
        delta = smoot_delta(logits.softmax(1), masked_logits.softmax(1), self.cfg.alpha, self.cfg.n)
        self.K[idx] = smoot_update(self.K[idx], delta, self.cfg.mu, self.cfg.k_min, self.cfg.k_max)

    def state_dict(self) -> dict:
        return {"K": self.K.clone()}

    def load_state_dict(self, state: dict) -> None:
        K = state["K"]
        check(K.shape == self.K.shape, f"saved SMOOT K has {K.shape[0]} entries, "
              f"the train set {self.K.shape[0]}: resume with the same data")
        self.K = K.to(torch.int16).clone()

    def k_stats(self) -> dict:
        k = self.K.float()
        return {"k_min": float(k.min()), "k_median": float(k.median()), "k_max": float(k.max())}


def make_objective(name: str, cfg: ObjectiveConfig, n_train: int, classes: int, seed: int = 0):
    check_choice(name, OBJECTIVES, "objective")
    if name == "traditional":
        return Traditional()
    if name == "sgt":
        return SGT(cfg, seed)
    return SMOOT(cfg, n_train, classes, seed)


def k_stats_of(objective, cfg: ObjectiveConfig) -> dict:
    """Min/median/max K over the training images: SMOOT's K, SGT's fixed k, none otherwise."""
    if isinstance(objective, SMOOT):
        return objective.k_stats()
    if isinstance(objective, SGT):
        return {"k_min": cfg.k, "k_median": cfg.k, "k_max": cfg.k}
    return {"k_min": math.nan, "k_median": math.nan, "k_max": math.nan}
