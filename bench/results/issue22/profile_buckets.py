"""Busy samples of a py-spy raw profile (idle waits left out): inclusive and self shares.

Run: python bench/results/issue22/profile_buckets.py PROFILE.txt [N]
"""

from __future__ import annotations

import collections
import re
import sys

# Frames of a thread waiting (on the database, a queue, the selector): not CPU.
IDLE = (
    "Connection.wait",
    "EpollSelector.select",
    "Condition.wait",
    "Queue.get",
    "wait_for_readable",
    "select (selectors",
)


def _name(frame: str) -> str:
    found = re.match(r"(.*?) \((.*?):\d+\)", frame)
    return f"{found.group(1)} {found.group(2).split('/')[-1]}" if found else frame[:60]


def main(path: str, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            line = line.rstrip()
            if not line:
                continue
            stack, count = line.rsplit(" ", 1)
            frames = stack.split(";")
            if any(idle in frame for frame in frames for idle in IDLE):
                continue
            samples = int(count)
            total += samples
            for name in {_name(frame) for frame in frames}:
                inclusive[name] += samples
            own[_name(frames[-1])] += samples
    print("busy samples", total)
    for name, samples in inclusive.most_common(top):
        print(f"{samples / total * 100:5.1f} {name}")
    print("--- self")
    for name, samples in own.most_common(25):
        print(f"{samples / total * 100:5.1f} {name}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60)
