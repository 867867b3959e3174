#!/bin/sh
# Issue 22's UploadStudy figures on this host: rounds interleave the code before this session
# (703d0fc), main (NEW) and Orthanc, 1,800 CT instances at 1 and 4 streams, SQLite index.
# usage: sh bench/results/issue22/host4/upload-rounds.sh NEW_REF ROUNDS
NEW=$1; OLD=703d0fc; OUT=bench/results/issue22/host4
for round in $(seq 1 "$2"); do
  for streams in 1 4; do
    for who in "$NEW sqlite" "$OLD sqlite" "HEAD orthanc" "$NEW postgres"; do
      set -- $who
      .venv/bin/python bench/ingest_bench.py --files 1800 --series 3 --streams $streams \
        --backends $2 --runs 1 --rss-files --large-mib 0 --workdir /tmp/ib --ref $1 \
        --json $OUT/upload-$1-$2-s$streams-r$round.json 2>&1 | grep "run=" | sed "s/^/$1 r$round /"
    done
  done
done
