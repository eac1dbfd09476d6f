"""How each metric of `evaluate` is computed: `Settings`, the `settings.*` keys."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.checks import added, check, check_choice, check_percents
from ..removal import FILLS, SUBSTRATES


@dataclass(frozen=True)
class Settings:
    """How each metric is computed (defaults: the papers')."""

    road_percents: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # Rong et al. 2022
    drop_percents: tuple[float, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    drop_fill: str = "corner"  # the SGT authors' evaluation fill
    deletion_step: int | None = None  # pixels per step; None: one image row (RISE: 224 at 224)
    deletion_step_percent: float | None = None  # or % of the pixels per step (not with the above)
    deletion_substrate: str = "mean"  # mean (RISE: 0 after normalisation) | black
    insertion_canvas: str = "blur"  # blur (RISE) | black
    mprt_images: int = 200  # images in the randomisation tests (mprt, random_logit)
    batch_size: int = 500
    # robustness (issue 18): left out of the run hash at their defaults (runs/config.py)
    robustness_images: int = added(200)
    robustness_samples: int = added(200)  # Quantus nr_samples
    sensitivity_radius: float = added(0.2)  # Quantus lower_bound
    lipschitz_std: float = added(0.1)  # Quantus perturb_std

    def validate(self) -> None:
        check_percents(self.road_percents, "settings.road_percents", closed=False)
        check_percents(self.drop_percents, "settings.drop_percents", closed=True)
        check_choice(self.drop_fill, FILLS, "settings.drop_fill")
        check_choice(self.insertion_canvas, ("blur", "black"), "settings.insertion_canvas")
        check_choice(self.deletion_substrate, SUBSTRATES, "settings.deletion_substrate")
        if self.deletion_step_percent is not None:
            check(self.deletion_step is None, "settings.deletion_step and "
                  "settings.deletion_step_percent both set: give the step in pixels or in %")
            check(0 < self.deletion_step_percent <= 100, "settings.deletion_step_percent must lie "
                  f"in (0, 100], got {self.deletion_step_percent!r}")
        counts = {"mprt_images": self.mprt_images, "batch_size": self.batch_size,
                  "robustness_images": self.robustness_images,
                  "robustness_samples": self.robustness_samples}
        if self.deletion_step is not None:
            counts["deletion_step"] = self.deletion_step
        for key, value in counts.items():
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                  f"settings.{key} must be a whole number >= 1, got {value!r}")
        for key in ("sensitivity_radius", "lipschitz_std"):
            value = getattr(self, key)
            check(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
                  f"settings.{key} must be a number > 0, got {value!r}")

    def deletion_pixels(self, pixels: int) -> int | None:
        """Pixels per deletion/insertion step for images of `pixels` pixels (None: one row)."""
        if self.deletion_step_percent is None:
            return self.deletion_step
        return max(1, round(self.deletion_step_percent * pixels / 100))
