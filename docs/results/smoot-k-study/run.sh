#!/bin/sh
# SMOOT's K under each reading of its update (issue 19, part 3), on a small CPU budget: MNIST's
# first $N training images, $E epochs, batch 256, Adadelta lr 1, sgt_cnn, one seed, SMOOT only;
# the accuracy-drop test cut to the random method and the uniform fill (K is what is studied).
# Run from the repository root: sh docs/results/smoot-k-study/run.sh  (the five readings at once)
N=${N:-4000}; E=${E:-3}; OUT=${OUT:-/tmp/smoot-k-study}
SL=${SL:-saliencylab}
for reading in "floor:image:clean" "trunc:image:clean" "round:image:clean" \
               "floor:batch:clean" "floor:image:masked"; do echo "$reading"; done |
xargs -P 5 -I{} sh -c '
  r={}; rounding=${r%%:*}; rest=${r#*:}; delta=${rest%%:*}; rank=${rest#*:}
  '"$SL"' sgt --preset smoot-mnist --data-dir '"${DATA:-../shared/data/mnist}"' --device cpu \
    --workers 1 --out '"$OUT"'/$rounding-$delta-$rank \
    --set objectives=smoot --set seeds=0 --set n_train='"$N"' --set n_test=500 \
    --set train.epochs='"$E"' --set eval.methods=random --set eval.fills=uniform \
    --set eval.percents=0,50,100 --set eval.grid_images=1 \
    --set objective.k_rounding=$rounding --set objective.k_delta=$delta \
    --set objective.k_rank=$rank > '"$OUT"'/log-$rounding-$delta-$rank.txt 2>&1'
