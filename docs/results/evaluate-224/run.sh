#!/usr/bin/env bash
# The 224-px report (docs/results/evaluate-224/README.md): the data set, the two models, and
# evaluate on each. Run from the repository root: bash docs/results/evaluate-224/run.sh OUT
# (MNIST's IDX files in ../shared/data/mnist, or pass DATA_DIR=...). PHASE=train|main|road
# runs one part (default: all); FOLDER=... puts the image folder elsewhere.
set -euo pipefail
OUT=${1:-runs224}
DATA_DIR=${DATA_DIR:-../shared/data}
PHASE=${PHASE:-all}
FOLDER=${FOLDER:-$OUT/mnist224}
mkdir -p "$OUT"
SL="saliencylab"

resnet=(--set model=examples/resnet18.py:build_half_width --set attribution.cam_layer=layer4)
vit=(--set model=deit_tiny --set vit.depth=4 --set vit.dim=96 --set vit.patch_size=32
     --set vit.allow_random_init=true)

if [[ $PHASE == all || $PHASE == train ]]; then
  python examples/mnist224.py "$FOLDER" --train 800 --test 160 --data-dir "$DATA_DIR"
  # each model trained once with `saliencylab train` (the traditional objective: plain
  # cross-entropy), its weights then given to evaluate as model_file
  $SL train --objective traditional --dataset "folder:$FOLDER" "${resnet[@]:0:2}" \
    --set train.epochs=3 --set train.batch_size=32 --set train.optimizer=sgd --set train.lr=0.02 \
    --set eval.grid_images=1 --set eval.percents=0,50 --set eval.methods=random \
    --set eval.fills=corner --out "$OUT/resnet-train"
  $SL train --objective traditional --dataset "folder:$FOLDER" "${vit[@]}" \
    --set train.epochs=20 --set train.batch_size=32 --set train.optimizer=adadelta --set train.lr=1 \
    --set eval.grid_images=1 --set eval.percents=0,50 --set eval.methods=random \
    --set eval.fills=corner --out "$OUT/vit-train"
fi

weights() { ls "$OUT/$1-train"/train-traditional-*/artifacts/model-traditional-s0.pt; }
common=(--dataset "folder:$FOLDER" --set seeds=0 --set n_test=16 --set bootstrap=1000
        --set methods=gradient,integrated_gradients,gradcam,attention_rollout,transformer_attribution,lrp,random
        --set attribution.ig_steps=16 --set settings.deletion_step=none
        --set settings.deletion_step_percent=5 --set settings.mprt_images=2 --workers 1)
for phase in main road; do
  [[ $PHASE == all || $PHASE == "$phase" ]] || continue
  metrics=$([[ $phase == main ]] && echo deletion,insertion,mprt,accuracy_drop || echo road)
  $SL evaluate "${common[@]}" "${resnet[@]}" --set metrics=$metrics \
    --set "model_file=$(weights resnet)" --out "$OUT/resnet-$phase"
  $SL evaluate "${common[@]}" "${vit[@]}" --set metrics=$metrics \
    --set "model_file=$(weights vit)" --out "$OUT/vit-$phase"
done
