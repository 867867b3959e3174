#!/bin/bash
# Interleaved rounds: main before issue 22 (5a3b88e) and this branch, Orthanc in every run.
cd /work/wt/durability
OUT=bench/results/issue22
HEAD_REF=$1
for r in ${ROUNDS:-1 2 3}; do
  for side in base:5a3b88e head:$HEAD_REF; do
    n=${side%%:*}; ref=${side#*:}
    echo "round $r $n $ref start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    .venv/bin/python bench/ingest_bench.py --files 1800 --streams 1 4 --runs 1 --large-mib 0 \
      --backends sqlite postgres orthanc --ref $ref --workdir /tmp/durbench/work \
      --json $OUT/upload-$n-$r.json > $OUT/upload-$n-$r.log 2>&1
    grep "CT 1800 " $OUT/upload-$n-$r.log
  done
done
echo "done $(date -u +%H:%M:%S)"
