#!/usr/bin/env bash
# The 224-px report (docs/results/evaluate-224/README.md): the data set, the two models, and
# evaluate on each. Run from the repository root: bash docs/results/evaluate-224/run.sh OUT
# (MNIST's IDX files in ../shared/data/mnist, or pass DATA_DIR=...).
# PHASE=data|train|main|road runs one part, MODELS="resnet vit" the models (default: all);
# FOLDER=... puts the image folder elsewhere.
set -euo pipefail
OUT=${1:-runs224}
DATA_DIR=${DATA_DIR:-../shared/data}
PHASE=${PHASE:-all}
MODELS=${MODELS:-resnet vit}
FOLDER=${FOLDER:-$OUT/mnist224}
mkdir -p "$OUT"
phase() { [[ $PHASE == all || $PHASE == "$1" ]]; }

# the models (--set keys) and how each is trained (plain cross-entropy: the traditional objective)
declare -A model train
model[resnet]="--set model=examples/resnet18.py:build_half_width"
train[resnet]="--set train.epochs=3 --set train.optimizer=sgd --set train.lr=0.02"
model[vit]="--set model=deit_tiny --set vit.depth=4 --set vit.dim=96 --set vit.patch_size=32 --set vit.allow_random_init=true"
train[vit]="--set train.epochs=20 --set train.optimizer=adamw --set train.lr=0.001 --set train.weight_decay=0.05"
declare -A explain=([resnet]="--set attribution.cam_layer=layer4" [vit]="")

if phase data; then
  python examples/mnist224.py "$FOLDER" --train 800 --test 160 --data-dir "$DATA_DIR"
fi
for m in $MODELS; do
  if phase train; then  # trained once; its weights are then evaluate's model_file
    saliencylab train --objective traditional --dataset "folder:$FOLDER" ${model[$m]} ${train[$m]} \
      --set train.batch_size=32 --set eval.grid_images=1 --set eval.percents=0,50 \
      --set eval.methods=random --set eval.fills=corner --out "$OUT/$m-train"
  fi
  weights=$(ls "$OUT/$m-train"/train-traditional-*/artifacts/model-traditional-s0.pt 2>/dev/null || true)
  for part in main road; do
    phase $part || continue
    metrics=$([[ $part == main ]] && echo deletion,insertion,mprt,accuracy_drop || echo road)
    saliencylab evaluate --dataset "folder:$FOLDER" ${model[$m]} ${explain[$m]} \
      --set "model_file=$weights" --set metrics=$metrics --set seeds=0 --set n_test=16 \
      --set methods=gradient,integrated_gradients,gradcam,attention_rollout,transformer_attribution,lrp,random \
      --set attribution.ig_steps=16 --set settings.deletion_step=none \
      --set settings.deletion_step_percent=5 --set settings.mprt_images=2 --set bootstrap=1000 \
      --workers 1 --out "$OUT/$m-$part"
  done
done
