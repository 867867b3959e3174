"""What the benchmarks share: the code under test, processes, timing, PostgreSQL, results.

Every script here runs mutualrec from a private copy of the package (``git archive`` of a ref,
or the working tree), starts its servers as child processes whose output goes to a log, reads
their CPU and memory from /proc, and writes its figures as JSON under ``bench/results/``.
Imported by the scripts as a sibling module (a script's own directory is on ``sys.path``);
it imports nothing from mutualrec at module level, so a script can put a snapshot of the
package first on ``sys.path`` before anything imports it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
# Where result files go (<bench>[-<variant>].json), cited by docs/benchmarks.md.
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = REPO / ".venv" / "bin"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# The line ``mutualrec serve`` prints once it listens.
LISTENING = re.compile(r"mutualrec listening on (\S+):(\d+)")
# The command line interface, as the benchmarks run it: from the snapshot (the working
# directory, which ``python -m`` puts first on sys.path).
MUTUALREC_CLI = ("-m", "mutualrec.cli")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Progress and timing
# ---------------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Phases:
    """Wall time of each phase, logged as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def done(self, name: str, detail: str = "") -> float:
        """Close the running phase as ``name``."""
        now = time.perf_counter()
        took = now - self._t0
        self.seconds[name] = round(took, 2)
        self._t0 = now
        log(f"{name}: {took:.1f} s" + (f" ({detail})" if detail else ""))
        return took


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, interpolated linearly between ranks (0 if none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """n, median, p90, p99, max and mean of latencies, in milliseconds."""
    return {
        "n": len(seconds),
        "p50_ms": round(1000 * percentile(seconds, 50), 2),
        "p90_ms": round(1000 * percentile(seconds, 90), 2),
        "p99_ms": round(1000 * percentile(seconds, 99), 2),
        "max_ms": round(1000 * max(seconds, default=0.0), 2),
        "mean_ms": round(1000 * statistics.fmean(seconds), 2) if seconds else 0.0,
    }


def interleaved(rounds: int, configurations: Iterable[T]) -> Iterator[tuple[int, T]]:
    """(round, configuration): every configuration once per round, rounds one after another.

    Configurations compared with each other run in turns, so a drift of the machine (another
    job, a warming cache) touches all of them alike instead of whichever ran last.
    """
    listed = list(configurations)
    for number in range(1, rounds + 1):
        for configuration in listed:
            yield number, configuration


def self_cpu() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# The code under test
# ---------------------------------------------------------------------------------------------


def snapshot_code(workdir: Path, ref: str | None) -> tuple[Path, str]:
    """A private copy of the ``mutualrec`` package to benchmark, and a description of it.

    With a git ref, the package as committed there (``git archive``); with None, the working
    tree as it is now. Either way the benchmark is not disturbed by edits made while it runs.
    """
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref or "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    if ref is not None:
        target = workdir / "code" / head
        if not (target / "mutualrec" / "__init__.py").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", "--format=tar", head, "mutualrec"],
                capture_output=True,
                check=True,
                timeout=120,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=120)
        return target, f"git {head}"
    target = workdir / "code" / "worktree"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        REPO / "mutualrec", target / "mutualrec", ignore=shutil.ignore_patterns("__pycache__")
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "mutualrec"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return target, f"working tree on {head}" + (" (with uncommitted changes)" if dirty else "")


def check_snapshot(code_dir: Path) -> None:
    """Fail unless a server started the way the benchmark starts it imports ``code_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env["PYTHONPATH"] = str(code_dir)
    found = subprocess.run(
        [sys.executable, "-c", "import mutualrec.cli; print(mutualrec.cli.__file__)"],
        env=env,
        cwd=code_dir,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(code_dir.resolve()):
        raise SystemExit(f"mutualrec would be imported from {found}, not from {code_dir}")


def import_snapshot(code_dir: Path) -> None:
    """Put ``code_dir`` first on this process's path, so its own calls into mutualrec (clients,
    plans, in-process timings) run the code the servers run; fails if mutualrec is already
    imported from elsewhere."""
    sys.path.insert(0, str(code_dir))
    import mutualrec

    if not Path(mutualrec.__file__).resolve().is_relative_to(code_dir.resolve()):
        raise SystemExit(f"this process imports mutualrec from {mutualrec.__file__}")


def table_columns(model: Any, omit: Iterable[str] = ()) -> tuple[str, ...]:
    """The columns of a mutualrec model's table in the table's order, less ``omit``: what a
    generator's COPY lists, read off the model of the code under test (any ref)."""
    left_out = set(omit)
    return tuple(c.name for c in model.__table__.columns if c.name not in left_out)


def mutualrec_env(code_dir: Path, **settings: str) -> dict[str, str]:
    """This environment without its MUTUALREC_* variables, the snapshot on PYTHONPATH, and
    ``settings`` as MUTUALREC_<NAME> (``data_dir="..."`` becomes ``MUTUALREC_DATA_DIR``).

    Rate limiting is off: the benchmarks measure the service, not its per-credential limit.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env["PYTHONPATH"] = str(code_dir)
    env["MUTUALREC_RATE_LIMIT"] = "0"
    env.update({f"MUTUALREC_{name.upper()}": value for name, value in settings.items()})
    return env


def client_env(code_dir: Path) -> dict[str, str]:
    """The environment of a client process a benchmark starts: no MUTUALREC_* settings, the
    snapshot (its generated stubs, its client code) and the bench scripts importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env["PYTHONPATH"] = os.pathsep.join([str(code_dir), str(BENCH_DIR)])
    return env


def code_options(parser: argparse.ArgumentParser) -> None:
    """``--ref`` and ``--worktree``: which mutualrec code runs (see :func:`snapshot_code`)."""
    parser.add_argument(
        "--ref",
        default="HEAD",
        help="git ref of the mutualrec code to benchmark (default: HEAD, as committed)",
    )
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="benchmark the working tree's mutualrec package instead of --ref "
        "(uncommitted edits included, others' too)",
    )


def env_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--mutualrec-env NAME=VALUE`` (repeatable): extra environment of the servers."""
    parser.add_argument(
        "--mutualrec-env",
        action="append",
        default=[],
        type=_env_item,
        metavar="NAME=VALUE",
        help=f"extra environment of the servers, e.g. {example}",
    )


def _env_item(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError("takes NAME=VALUE")
    return text


def extra_env(env: dict[str, str], items: Iterable[str]) -> dict[str, str]:
    """``env`` with ``--mutualrec-env NAME=VALUE`` items added."""
    for item in items:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def run_cli(env: dict[str, str], code_dir: Path, *argv: str, timeout: float = 600) -> str:
    """``mutualrec ARGV`` from the snapshot; its standard output (exits on failure)."""
    result = subprocess.run(
        [sys.executable, *MUTUALREC_CLI, *argv],
        env=env,
        cwd=code_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"mutualrec {' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def last_line(output: str) -> str:
    """The last line of a command's output (an issued key, a token)."""
    return output.strip().splitlines()[-1].strip()


def serve(
    env: dict[str, str], code_dir: Path, log_path: Path, timeout: float = START_TIMEOUT
) -> tuple[ServerProcess, str]:
    """``mutualrec serve`` from the snapshot; the process and its ``host:port`` once it listens."""
    server = ServerProcess([sys.executable, *MUTUALREC_CLI, "serve"], log_path, env, cwd=code_dir)
    try:
        match = server.wait_for_line(LISTENING, timeout)
    except BaseException:
        server.stop()
        raise
    return server, f"127.0.0.1:{match[2]}"


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class ServerProcess:
    """A child process whose output is copied to a log file by a reader thread."""

    def __init__(
        self, argv: Sequence[str], log_path: Path, env: dict[str, str], cwd: Path | None = None
    ) -> None:
        self.log_path = log_path
        self._log: TextIO = log_path.open("w", encoding="utf-8")
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; fails on exit or after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if self.proc.poll() is not None or remaining <= 0:
                    raise RuntimeError(
                        f"server did not print {pattern.pattern!r} "
                        f"(exit {self.proc.returncode}); see {self.log_path}:\n"
                        + "\n".join(self._lines[-20:])
                    )
                self._cond.wait(min(remaining, 0.5))

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._reader.join(5)
        self._log.close()
        return self.proc.returncode


@dataclass(frozen=True)
class ProcessStats:
    """Memory and CPU use of a server process, read from /proc."""

    peak_rss_kib: int
    rss_kib: int
    user_seconds: float
    sys_seconds: float


def process_tree_stats(pid: int) -> ProcessStats:
    """:func:`process_stats` summed over ``pid`` and its live descendants (worker processes).

    For several processes the peak is the sum of each one's VmHWM: an upper bound of the peak
    of their total, which the RSS sampler measures directly.
    """
    import psutil

    pids = [pid]
    with contextlib.suppress(psutil.Error):
        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    total = ProcessStats(0, 0, 0.0, 0.0)
    for one in pids:
        try:
            stats = process_stats(one)
        except (OSError, KeyError):
            continue  # exited meanwhile
        total = ProcessStats(
            total.peak_rss_kib + stats.peak_rss_kib,
            total.rss_kib + stats.rss_kib,
            total.user_seconds + stats.user_seconds,
            total.sys_seconds + stats.sys_seconds,
        )
    return total


def process_stats(pid: int) -> ProcessStats:
    """VmHWM (peak resident set), VmRSS and user+system CPU seconds of ``pid``."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmHWM", "VmRSS"}:
            fields[key] = int(value.split()[0])
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = os.sysconf("SC_CLK_TCK")
    after_name = stat.rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return ProcessStats(fields["VmHWM"], fields["VmRSS"], utime / ticks, stime / ticks)


class RssSampler:
    """Polls a process's VmRSS during an upload, to see when its peak happens."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                rss = process_tree_stats(self.pid).rss_kib
                self.samples.append((time.perf_counter() - self._t0, rss))
            self._stop.wait(self.interval)

    def stop(self) -> tuple[int, float]:
        """Stop polling; the largest sample (KiB) and when it was taken (fraction of the run)."""
        self._stop.set()
        self._thread.join(5)
        if not self.samples:
            return 0, 0.0
        at, rss = max(self.samples, key=lambda sample: sample[1])
        return rss, at / max(self.samples[-1][0], 1e-9)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Profiler:
    """py-spy attached to a server process for one run, writing collapsed stacks."""

    def __init__(self, pid: int, out: Path, rate: int, *, gil: bool) -> None:
        exe = shutil.which("py-spy", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        if exe is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
                *(["--gil"] if gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # let it attach before the upload starts

    def stop(self) -> None:
        """Stop sampling and let py-spy write its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function of a py-spy ``raw`` (collapsed) file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    frame_shape = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")

    def name(frame: str) -> str:
        match = frame_shape.match(frame)
        if not match:
            return frame
        path = match["file"]
        if "/mutualrec/" in path and "site-packages" not in path:
            path = "mutualrec/" + path.rsplit("/mutualrec/", 1)[1]
        else:
            for marker in ("site-packages/", "lib/python3.11/"):
                if marker in path:
                    path = path.split(marker, 1)[1]
                    break
        return f"{path}:{match['func']}"

    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples\n", "self time (leaf frame):"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive time (frame anywhere on the stack), mutualrec code:")
    ours = [(f, n) for f, n in inclusive.most_common() if f.startswith("mutualrec/")]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in ours[:top]]
    lines.append("inclusive time, everything:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def database_url(name: str, host: str, user: str, port: int | None = None) -> str:
    """The SQLAlchemy URL a server uses for database ``name`` (``host`` a name or a socket
    directory)."""
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}@/{name}?host={host}" + (
            f"&port={port}" if port else ""
        )
    return f"postgresql+psycopg://{user}@{host}{f':{port}' if port else ''}/{name}"


def recreate_database(conn: Any, name: str) -> None:
    """Drop database ``name`` (closing its sessions) and create it empty; ``conn`` is an
    autocommit connection to another database of the server."""
    drop_database(conn, name)
    conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(conn: Any, name: str) -> None:
    """Drop database ``name`` if it exists, closing its sessions."""
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_cpu(database: str | None = None) -> tuple[dict[int, float], set[int]]:
    """CPU seconds of every PostgreSQL process by pid, and the pids serving ``database``.

    A server's queries run in PostgreSQL backends that are not its children, so the index's
    share of the work only shows here.
    """
    import psutil

    cpu: dict[int, float] = {}
    ours: set[int] = set()
    for proc in psutil.process_iter(["name", "cpu_times", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] in {"postgres", "postmaster"} and proc.info["cpu_times"]:
                times = proc.info["cpu_times"]
                cpu[proc.pid] = times.user + times.system
                cmd = " ".join(proc.info["cmdline"] or [])
                if database and f" {database} " in f" {cmd} ":
                    ours.add(proc.pid)
    return cpu, ours


def postgres_version(host: str, user: str, port: int | None = None) -> str:
    """The PostgreSQL server's version string, or '' when it cannot be read."""
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(
            host=host, port=port, user=user, dbname="postgres", connect_timeout=10
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else ""
    return ""


# ---------------------------------------------------------------------------------------------
# Machine, network namespace
# ---------------------------------------------------------------------------------------------


def enter_netns(argv: Sequence[str], flag: str, script: str) -> None:
    """Re-execute ``script`` inside a new network namespace with only loopback (no return);
    ``flag`` is the environment variable that tells the re-executed script it is inside."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("unshare (util-linux) is needed, or pass --no-netns")
    os.environ[flag] = "1"
    flags = ["--net"] if os.geteuid() == 0 else ["--net", "--map-root-user"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(unshare, [unshare, *flags, "--", sys.executable, script, *argv])


def loopback_only() -> None:
    """Bring up ``lo`` in this namespace and check it is the only interface."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    # /proc/self/net is per network namespace (unlike /sys/class/net, which belongs to the
    # namespace that mounted sysfs).
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
    if interfaces != ["lo"]:
        raise SystemExit(f"expected only lo in the benchmark namespace, found {interfaces}")


def filesystem_of(path: Path) -> str:
    """Device, type and mount options of the filesystem holding ``path``."""
    best = ("", "")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            device, mount, kind, options = line.split()[:4]
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, f"{device} on {mount} type {kind} ({options})")
    return best[1]


def machine(workdir: Path) -> dict[str, Any]:
    """CPU, memory, filesystem and software versions of this machine."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    orthanc = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        orthanc = subprocess.run(
            ["Orthanc", "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.splitlines()[0]
    postgres = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        postgres = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "filesystem": filesystem_of(workdir),
        "python": platform.python_version(),
        "orthanc": orthanc,
        "postgres_client": postgres,
    }


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def git_head(short: bool = False) -> str:
    """The repository's HEAD commit ('' outside a git checkout)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", *(["--short"] if short else []), "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    return ""


def tree_dirty(*paths: str) -> bool:
    """Whether the working tree differs from HEAD under ``paths``."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--", *paths],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout.strip()
        )
    return False


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` (directories made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or an empty one when there is none yet."""
    with contextlib.suppress(OSError, ValueError):
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, dict):
            return document
    return {}
