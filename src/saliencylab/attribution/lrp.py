"""Layer-wise relevance propagation (Bach et al. 2015) through Captum's `LRP`, epsilon rule.

Captum gives Linear, Conv2d, BatchNorm2d and the pooling layers the epsilon rule (ε = 1e-9)
and passes relevance through ReLU, Tanh and Dropout unchanged; `nn.Flatten` gets the epsilon
rule here (it has none in Captum, and only that rule keeps its shape). Any other leaf module
(LayerNorm, GELU, nn.Identity, attention) is refused by Captum: the method is then not
applicable, with the module named. Operations inside a forward (F.gelu, `x + skip`) are not
seen by Captum: they go through plain autograd, and relevance is no longer conserved there
(ResNet's skip adds, ViTs). With ReLU and max-pool only and ε -> 0, LRP-ε equals
input × gradient (Ancona et al. 2018); relevance sums to the target's logit when there are
no biases. A rule you set on a module (`module.rule = GammaRule()`) is used; Captum deletes
every `rule` after a call (captum issue 1059) and leaves each layer's `activations`: here the
leftovers are removed and your rules put back, so the model is left as it was.
"""

from __future__ import annotations

from captum.attr import LRP
from captum.attr._utils.lrp_rules import EpsilonRule
from torch import Tensor, nn

from ..core.errors import NotApplicable
from .base import Method, run_chunks


class LRPMethod(Method):
    name = "lrp"

    def attribute(self, model: nn.Module, x: Tensor, target) -> Tensor:
        score = self.score(model)

        def fn(xb: Tensor, tb: Tensor) -> Tensor:
            own_rules = {m: m.rule for m in model.modules() if hasattr(m, "rule")}
            for m in model.modules():
                if isinstance(m, nn.Flatten) and m not in own_rules:
                    m.rule = EpsilonRule()
            try:
                return LRP(score).attribute(xb, target=tb)
            except TypeError as e:  # Captum: "Module of type <class ...> has no rule defined"
                leaves = [f"{name} ({type(m).__name__})" for name, m in model.named_modules()
                          if not list(m.children()) and f".{type(m).__name__}'>" in str(e)]
                raise NotApplicable(f"lrp cannot explain {type(model).__name__}: Captum's LRP "
                                    f"has no rule for {', '.join(leaves[:3]) or str(e)[:120]}"
                                    ) from None
            finally:  # Captum's leftovers (inputs, rules) gone; the model's own rules back
                for m in model.modules():
                    m.__dict__.pop("activations", None)
                    m.__dict__.pop("rule", None)
                for m, rule in own_rules.items():
                    m.rule = rule

        return run_chunks(model, x, target, self.options.max_batch_rows, fn)
