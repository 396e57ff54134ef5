#!/usr/bin/env bash
# The methods issue's study (b) on the unconditional base: does SIMS's shift to a uniform class mix counter
# the curated loop's class bias? 10 generations, 3 seeds (stop 34 ran 5; stop 35 extended the same runs to
# 10 by running the same commands with --generations 10, and added the control). Resumable: run it again.
cd "$(dirname "$0")/../.."
U=0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1
F="it/s|s/it|Token auth"
autophagy compare --regimes curated --conditioning none --guidance-weight 2 --generations 10 --seeds 0,1,2 --out runs/shift-loop/plain --workers 2 2>&1 | grep -v -E "$F"
# the control: SIMS without a target
autophagy compare --regimes curated --sampler sims --conditioning none --guidance-weight 2 --generations 10 --seeds 0,1,2 --out runs/shift-loop/sims --workers 2 2>&1 | grep -v -E "$F"
autophagy compare --regimes curated --sampler sims --target-distribution $U --conditioning none --guidance-weight 2 --generations 10 --seeds 0,1,2 --out runs/shift-loop/sims-uniform --workers 2 2>&1 | grep -v -E "$F"
# rows older than stop 35 lack the health draws' class histogram: `autophagy rescore RUN` adds it from plain_samples.npz
autophagy report runs/shift-loop/plain/curated-s? runs/shift-loop/sims/curated-s? runs/shift-loop/sims-uniform/curated-s? --baseline sampler=plain --out runs/shift-loop/report10
