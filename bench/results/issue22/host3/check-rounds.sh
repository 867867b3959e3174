#!/bin/sh
# Issue 22's CheckOrder figures on this host: rounds alternate the code before batching (5a3b88e)
# and main; rounds 1-2 offer 300 and 1,200 checks/s for 15 s, rounds 3-5 300/s for 30 s.
# usage: sh bench/results/issue22/host3/check-rounds.sh NEW_REF
NEW=$1; OLD=5a3b88e; OUT=bench/results/issue22/host3
run() { # ref round rates duration
  .venv/bin/python bench/check_bench.py --database mutualrec_city --workdir /tmp/city \
    --pg-host 127.0.0.1 --rates $3 --duration $4 --warmup 5 --processes 2 --skip-explain \
    --ref $1 --json $OUT/check-$1-$2.json > $OUT/check-$1-$2.log 2>&1
}
run $NEW 1 "300 1200" 15; run $OLD 1 "300 1200" 15
run $OLD 2 "300 1200" 15; run $NEW 2 "300 1200" 15
run $NEW 3 300 30; run $OLD 3 300 30
run $OLD 4 300 30; run $NEW 4 300 30
run $NEW 5 300 30; run $OLD 5 300 30
