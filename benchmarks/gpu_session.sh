#!/usr/bin/env bash
# The training benchmarks' GPU figures in one session of about 9 minutes on one GPU:
#
#     OUT=DIR bash benchmarks/gpu_session.sh     (default OUT=runs/gpu_session)
#
# 1. in the background, on the CPUs: the paper-scale quad-link data, clean and noisy
#    (experiments.py's sets and seeds: 4,000 / 400 / 1,000 sequences x 150 steps), into $WORK;
# 2. gpu_step_check.py: the captured step trains what the eager step trains; tf32 and bf16
#    keep the validation NLL (its pass or failure picks the step and precision of 4 and 5);
# 3. training_step.py: RKN epoch against the cuDNN GRU epoch, eager and captured, profiled;
# 4. paper_scale.py: the paper-scale RKN (m = 100) towards early stopping, deadline $PAPER_S;
# 5. experiments.py quad_link --scale paper --matched: RKN against LSTM and GRU (50 units
#    and parameter-matched), clean and noisy, $SEEDS seeds, all runs at once on the one GPU,
#    deadline $EXPERIMENT_S, runs stopped by it evaluated at their best epoch.
# What comes back (at most 8 files): $OUT/session.log and the figures as JSON and markdown.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_session}
WORK=${WORK:-/tmp/rkn_gpu_session}  # data and runs: too large to bring back
PY=${PY:-python3}
SEEDS=${SEEDS:-2}
PAPER_S=${PAPER_S:-120}
EXPERIMENT_S=${EXPERIMENT_S:-150}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
LOG=$OUT/session.log
exec > >(tee -a "$LOG") 2>&1
start=$(date +%s)
stamp() { echo "== $(( $(date +%s) - start )) s: $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nproc

stamp "1. generating the paper-scale quad-link data in the background"
$PY - "$WORK" <<'EOF' > "$WORK/generate.log" 2>&1 &
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import experiments
sizes = experiments.SCALES["paper"]["quad_link"]
experiments._generate_all([(Path(sys.argv[1]), "quad_link", sizes, noise, 0.0)
                           for noise in (False, True)], 6)
EOF
generator=$!

stamp "2. captured against eager step"
STEP=eager PRECISION=fp32
if timeout 150 $PY benchmarks/gpu_step_check.py --out "$WORK/step_check"; then
    STEP=cuda_graph PRECISION=tf32
fi
stamp "step $STEP, precision $PRECISION for the paper-scale runs"

stamp "3. RKN epoch against GRU epoch"
timeout 120 $PY benchmarks/training_step.py --device cuda --step eager --epochs 3 \
    --json "$OUT/training_step_eager.json" --profile "$WORK/profile_eager.txt"
timeout 120 $PY benchmarks/training_step.py --device cuda --step cuda_graph --precision "$PRECISION" \
    --epochs 3 --json "$OUT/training_step_graph.json" --profile "$WORK/profile_graph.txt"
cat "$WORK"/profile_*.txt > "$OUT/profiles.txt" 2>/dev/null

stamp "waiting for the data"
wait $generator
tail -3 "$WORK/generate.log"

stamp "4. paper-scale quad-link RKN, deadline $PAPER_S s"
timeout $(( PAPER_S + 120 )) $PY benchmarks/paper_scale.py --device cuda --step "$STEP" \
    --precision "$PRECISION" --deadline-s "$PAPER_S" --out "$WORK" --json "$OUT/paper_scale.json"

stamp "5. RKN against LSTM and GRU at the paper's scale, deadline $EXPERIMENT_S s"
runs=$(( 2 * 5 * SEEDS ))
timeout $(( EXPERIMENT_S + 150 )) $PY benchmarks/experiments.py quad_link --scale paper --matched \
    --seeds "$SEEDS" --jobs "$runs" --device cuda --step "$STEP" --precision "$PRECISION" \
    --deadline-s "$EXPERIMENT_S" --evaluate-stopped --out "$WORK/quad_link"
cp "$WORK/quad_link/results.md" "$OUT/quad_link_results.md" 2>/dev/null
cp "$WORK/quad_link/results.json" "$OUT/quad_link_results.json" 2>/dev/null
stamp "done"
