#!/usr/bin/env bash
# stop 34: the methods issue's study (b) on the unconditional base: does SIMS's shift to a uniform class mix counter the curated loop's class bias? 5 generations, 3 seeds
cd /work/main
U=0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1
echo "=== curated plain $(date)"
.venv/bin/autophagy compare --regimes curated --conditioning none --guidance-weight 2 --generations 5 --seeds 0,1,2 --out runs/shift-loop/plain --workers 2 2>&1 | grep -v -E "it/s|s/it|Token auth"
echo "=== curated sims uniform $(date)"
.venv/bin/autophagy compare --regimes curated --sampler sims --target-distribution $U --conditioning none --guidance-weight 2 --generations 5 --seeds 0,1,2 --out runs/shift-loop/sims-uniform --workers 2 2>&1 | grep -v -E "it/s|s/it|Token auth"
echo "=== done $(date)"
# the control of study (b): curated + SIMS without a target (started at the end of stop 34; resumable)
# .venv/bin/autophagy compare --regimes curated --sampler sims --conditioning none --guidance-weight 2 --generations 5 --seeds 0,1,2 --out runs/shift-loop/sims --workers 2
