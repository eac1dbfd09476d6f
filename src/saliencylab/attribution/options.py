"""Every knob of every attribution method, in one frozen config (`attribution.*` keys)."""

from dataclasses import dataclass

from ..core.checks import added, check

BASELINES = ("black", "zeros", "uniform")
OUTPUTS = ("logit", "log_softmax")


@dataclass(frozen=True)
class MethodOptions:
    # The reference input of IG, DeepLift, GradientShap, DeepLiftShap and occlusion:
    # black = the data set's black image in raw pixel space, normalised like any input (the
    #   default: Captum's zeros after normalisation are a grey image);
    # zeros = zeros after normalisation (Captum's default);
    # uniform = uniform [0, 1) noise in the model's input space, one per image and seeded (the
    #   SGT authors' evaluation, Scripts/Helper.py lines 140, 147, 155, 166).
    baseline: str = "black"
    ig_steps: int = 50  # Gauss-Legendre steps of IG (Captum's default rule)
    smoothgrad_samples: int = 25  # noisy copies per image (SmoothGrad, SmoothGrad², VarGrad)
    smoothgrad_sigma: float = 0.15  # noise std as a fraction of the input's range (Smilkov et al. 2017)
    smoothgrad_stdev: float | None = None  # absolute noise std; set, it overrides sigma
    shap_baselines: int = 5  # baselines per image: GradientShap's pool, DeepLiftShap's average
    gradient_shap_samples: int = 5  # Captum's n_samples
    gradient_shap_stdev: float = 0.09  # the SGT authors' GradientShap noise (Helper.py line 159)
    occlusion_window: int = 3  # square patch, in pixels
    occlusion_stride: int = 1
    cam_layer: str = "activation"  # activation (the model's rectified last conv) | conv | a module path
    # ViT tokens [B, T, D] at the CAM layer, and attention maps: leading tokens (class,
    # distillation) dropped before the patch grid; none = the fewest that leave a square
    cam_tokens_dropped: int | None = added(None)
    output: str = "logit"  # logit | log_softmax: the score the attribution explains
    seed: int = 0  # every random draw of a method (noise, baselines, random maps)
    max_batch_rows: int = 512  # rows per forward pass, whatever the method (bounded memory)

    def validate(self) -> None:
        check(self.baseline in BASELINES, f"attribution.baseline must be one of {', '.join(BASELINES)}")
        check(self.output in OUTPUTS, f"attribution.output must be one of {', '.join(OUTPUTS)}")
        check(self.ig_steps >= 1, "attribution.ig_steps must be >= 1")
        check(self.smoothgrad_samples >= 1, "attribution.smoothgrad_samples must be >= 1")
        check(self.smoothgrad_sigma >= 0, "attribution.smoothgrad_sigma must be >= 0")
        check(self.smoothgrad_stdev is None or self.smoothgrad_stdev >= 0,
              "attribution.smoothgrad_stdev must be >= 0 (or none)")
        check(self.shap_baselines >= 1 and self.gradient_shap_samples >= 1,
              "attribution.shap_baselines and gradient_shap_samples must be >= 1")
        check(self.gradient_shap_stdev >= 0, "attribution.gradient_shap_stdev must be >= 0")
        check(self.occlusion_window >= 1 and self.occlusion_stride >= 1,
              "attribution.occlusion_window and occlusion_stride must be >= 1")
        check(self.max_batch_rows >= 1, "attribution.max_batch_rows must be >= 1")
        check(self.cam_tokens_dropped is None or self.cam_tokens_dropped >= 0,
              "attribution.cam_tokens_dropped must be >= 0 (or none)")
