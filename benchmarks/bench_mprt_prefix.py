"""What reusing the unchanged prefix would save in cascading MPRT (issue 17), gradient maps, on
the ResNet-18-style model of bench_metrics.py (an nn.Sequential: its top-level children are the
cut points): per cascade step, a plain forward + backward (input gradient of the explained
logits) against the suffix's forward + backward from the trained prefix's cached output plus
the backward through the prefix's retained graph. An upper bound: no cache bookkeeping, no
check that the method leaves the prefix alone (hooks), one cut per top-level child.

    PYTHONPATH=src:benchmarks python benchmarks/bench_mprt_prefix.py [images, default 4]
"""
import copy
import sys
import time

import torch
import torch.nn.functional as F
from bench_metrics import resnet18

from saliencylab.evaluation.randomization import layer_seed, layers_top_down, randomize_layer

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
model = resnet18().eval()
g = torch.Generator().manual_seed(1)
x = F.avg_pool2d(torch.rand(n, 3, 240, 240, generator=g), 17, 1)
y = model(x).argmax(1).detach()
layers = layers_top_down(model, x)
child = {name: int(name.split(".")[0]) for name in layers}
def plain(m):
    xb = x.clone().requires_grad_(True)
    out = m(xb).gather(1, y[:, None]).sum()
    return torch.autograd.grad(out, xb)[0]
# the prefix's forward once (graph retained), output of children[:j] for every j
xb = x.clone().requires_grad_(True)
acts = [xb]
for c in model:
    acts.append(c(acts[-1]))
def reused(m, j):
    h = acts[j].detach().requires_grad_(True)
    out = h
    for c in list(m)[j:]:
        out = c(out)
    gh = torch.autograd.grad(out.gather(1, y[:, None]).sum(), h)[0]
    return torch.autograd.grad(acts[j], xb, gh, retain_graph=True)[0] if j > 0 else gh
rand = copy.deepcopy(model)
tp = tr = 0.0
worst = 0.0
for i, name in enumerate(layers):
    randomize_layer(rand, name, layer_seed(0, i))
    j = child[name]
    best_p = best_r = 1e9
    for _ in range(2):
        s = time.perf_counter(); a = plain(rand); best_p = min(best_p, time.perf_counter() - s)
        s = time.perf_counter(); b = reused(rand, j); best_r = min(best_r, time.perf_counter() - s)
    worst = max(worst, float((a - b).abs().max() / a.abs().max()))
    tp += best_p; tr += best_r
print(f"{n} images, {len(layers)} cascade steps: plain {tp:.2f} s, prefix reused {tr:.2f} s, "
      f"saving {100 * (1 - tr / tp):.1f}%, largest relative difference {worst:.1e}")
