#!/bin/sh
# Issue 22 item 2: CheckOrder before (5a3b88e, main before the issue) and after (the batched
# branch's commit given as $1), alternated within every round, on the 10 M city.
# Run from the batched worktree: sh bench/results/issue22/check-rounds.sh REF ROUNDS
AFTER=$1; ROUNDS=${2:-4}; OUT=bench/results/issue22
run() {  # side ref round
  .venv/bin/python bench/check_bench.py --database mutualrec_city --workdir /tmp/city \
      --ref "$2" --rates 300 600 1200 --duration 15 --warmup 5 --processes 2 --skip-explain \
      --json "$OUT/check-$1-$3.json" > "$OUT/check-$1-$3.log" 2>&1
  uptime >> "$OUT/check-$1-$3.log"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run before 5a3b88e "$r"; run after "$AFTER" "$r"
  else run after "$AFTER" "$r"; run before 5a3b88e "$r"; fi
done
echo ROUNDSDONE
