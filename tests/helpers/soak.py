"""A soak of the node: small studies from concurrent senders while the worker is SIGKILLed.

Why a soak: single fault tests show that one kill is survived; a soak shows that the sum of
them is, for as long as it runs: every study sent gets exactly one SR, the SCP never stops,
and nothing is stranded. `sgc scp` and `sgc worker` run as separate children (as `sgc serve`
runs them) and the soak plays the supervisor, starting a new worker after every kill; or, with
``serve=True``, the node is one `sgc serve` whose own supervisor must bring the worker back.

Kills land in the middle of a classification: a kill that is due waits until a job is
running (so a worker just restarted, still loading its model, is never the target; under
`sgc serve` killing it at birth would only grow the supervisor's restart backoff). It spares a
job that already lost SGC_MAX_ATTEMPTS - 1 workers: killing it once more would make the
soak's own kills a poison study, which is a different test (tests/test_job_takeback.py).

Used by tests/test_reliability_soak.py and benchmarks/soak.py.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import func, select

from db.models import Job, JobState, Report, Study
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import NodeProcesses, port_open, storescu, wait_until
from tests.helpers.services import free_port

WORKER_ARGS = ("worker", "--queues", "classify,deliver", "--pool", "solo")


@dataclass
class SoakConfig:
    studies: int = 200
    senders: int = 4
    kill_every: float = 20.0  # seconds between worker kills (0: never)
    max_kills: int | None = None  # stop killing after this many
    send_over: float = 0.0  # spread the sends over this many seconds (0: back to back)
    images: int = 2  # views per study
    rows: int = 64
    cols: int = 48
    drain_timeout: float = 600.0
    max_attempts: int = 3
    node: dict[str, object] = field(default_factory=dict)  # further SGC_* settings
    serve: bool = False  # one `sgc serve` (it restarts the worker) instead of scp + worker


@dataclass
class SoakResult:
    sent: int = 0
    acked: int = 0
    kills: int = 0
    kills_mid_classification: int = 0
    unexpected_worker_exits: int = 0
    scp_exit: int | None = None
    reports: dict[str, int] = field(default_factory=dict)  # study UID -> Report rows
    sr_files: dict[str, int] = field(default_factory=dict)  # study UID -> SR files
    jobs: dict[str, int] = field(default_factory=dict)  # state -> count
    lost_attempts: int = 0
    seconds_to_sr: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def duplicates(self) -> int:
        """Studies with more than one report row or SR file."""
        return sum(1 for uid in self.reports if self.reports[uid] > 1 or self.sr_files[uid] > 1)

    @property
    def missing(self) -> int:
        return sum(1 for uid in self.reports if self.reports[uid] == 0 or self.sr_files[uid] == 0)

    @property
    def ok(self) -> bool:
        return (
            self.acked == self.sent
            and self.missing == 0
            and self.duplicates == 0
            and self.scp_exit is None
            and self.jobs.get("failed", 0) == 0
        )

    def figures(self) -> str:
        t = sorted(self.seconds_to_sr) or [float("nan")]
        return "\n".join(
            [
                f"studies sent:               {self.sent} (acknowledged {self.acked})",
                f"studies with an SR:         {self.sent - self.missing}",
                f"studies with duplicates:    {self.duplicates}",
                f"studies without an SR:      {self.missing}",
                f"worker SIGKILLs:            {self.kills} "
                f"({self.kills_mid_classification} mid-classification)",
                f"unexpected worker exits:    {self.unexpected_worker_exits}",
                f"node stopped:               {'no' if self.scp_exit is None else self.scp_exit}",
                f"jobs by state:              {self.jobs}",
                f"lost attempts (summed):     {self.lost_attempts}",
                f"time to SR median / max:    {statistics.median(t):.1f} s / {t[-1]:.1f} s",
                f"elapsed:                    {self.elapsed:.0f} s",
                f"verdict:                    {'PASS' if self.ok else 'FAIL'}",
            ]
        )


def make_studies(folder: Path, config: SoakConfig) -> list[list[Path]]:
    """``config.studies`` small synthetic studies (tests/helpers/mg.py phantoms)."""
    return [
        write_study(folder / f"{i:05d}", n=config.images, rows=config.rows, cols=config.cols)
        for i in range(config.studies)
    ]


class _Soak:
    """One run: the node's children, the senders, the killer and what they saw."""

    def __init__(self, folder: Path, model: Path, config: SoakConfig, log) -> None:
        self.config, self.log = config, log
        self.node = NodeProcesses.create(
            folder / "node", port=free_port(), model=model, device="cpu",
            max_attempts=config.max_attempts, **config.node,
        )  # fmt: skip
        self.sessions = None
        self.result = SoakResult()
        self.sent_at: dict[str, datetime] = {}
        self.lock = threading.Lock()
        self.senders_done = threading.Event()
        self.stop = threading.Event()

    @property
    def front(self) -> str:
        """The child that must never stop: `sgc serve`, or `sgc scp` when the soak supervises."""
        return "serve" if self.config.serve else "scp"

    def start(self) -> None:
        if self.config.serve:
            serve = self.node.start("serve", "serve")
            wait_until(lambda: port_open(self.node.port), "sgc serve to listen", 120, [serve])
        else:
            self.node.start_scp()
            self.node.start("worker", *WORKER_ARGS)
        self.sessions = self.node.sessions()

    def serve_worker(self) -> int | None:
        """The pid of `sgc serve`'s classify worker (its own process group), if it is running."""
        pid = self.node.procs["serve"].pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in children:
                if b"worker\0--queues\0classify" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        except OSError:
            pass
        return None

    def send(self, batch: list[list[Path]], start: float, interval: float) -> None:
        for j, files in enumerate(batch):
            delay = start + j * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
            run = storescu(self.node.port, files)
            with self.lock:
                self.result.sent += 1
                self.sent_at[uid] = datetime.now(UTC)
                if run.returncode == 0 and len(run.succeeded) == len(files):
                    self.result.acked += 1
                else:
                    self.log(f"study {uid}: storescu {run.returncode}\n{run.output[-2000:]}")

    def running_job(self) -> bool:
        """A job is running whose worker may still be killed without making it poison."""
        with self.sessions() as s:
            return bool(
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(
                        Job.state == JobState.running,
                        Job.lost_attempts < self.config.max_attempts - 1,
                    )
                )
            )

    def kill_worker(self) -> None:
        mid = self.running_job()  # checked again: the job may have ended since the poll
        if self.config.serve:  # sgc serve restarts it
            pid = wait_until(
                self.serve_worker, "sgc serve's worker", 120, [self.node.procs["serve"]]
            )
            os.killpg(int(pid), signal.SIGKILL)  # type: ignore[arg-type]
        else:
            self.node.kill("worker")
        self.result.kills += 1
        self.result.kills_mid_classification += int(mid)
        self.log(f"kill {self.result.kills}: {'mid-classification' if mid else 'idle'}")
        if not self.config.serve:
            self.node.start("worker", *WORKER_ARGS)

    def supervise(self) -> None:
        """Kill the worker on schedule, restart one that died by itself, watch the SCP."""
        next_kill = time.monotonic() + self.config.kill_every
        while not self.stop.is_set():
            front, worker = self.node.procs[self.front], self.node.procs.get("worker")
            if front.poll() is not None:
                self.result.scp_exit = front.returncode
                self.log(f"sgc {self.front} exited with {front.returncode}")
                return
            if worker is not None and worker.poll() is not None:
                self.result.unexpected_worker_exits += 1
                self.log(f"the worker exited by itself with {worker.returncode}; restarted")
                self.node.start("worker", *WORKER_ARGS)
            killing = self.config.kill_every > 0 and not self.senders_done.is_set()
            limit = self.config.max_kills
            due = time.monotonic() >= next_kill
            if killing and due and (limit is None or self.result.kills < limit):
                if self.running_job():
                    self.kill_worker()
                    next_kill = time.monotonic() + self.config.kill_every
                self.stop.wait(0.02)  # poll fast while a kill waits for a running job
                continue
            self.stop.wait(0.2)

    def drained(self) -> bool:
        """Every sent study has a job and none is pending or running."""
        with self.sessions() as s:
            open_jobs = s.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.state.in_([JobState.pending, JobState.running]))
            )
            settled = s.scalar(select(func.count()).select_from(Study).where(Study.jobbed_rev >= 1))
        return open_jobs == 0 and settled >= len(self.sent_at)

    def collect(self) -> None:
        r = self.result
        with self.sessions() as s:
            r.jobs = {
                k.value: v
                for k, v in s.execute(select(Job.state, func.count()).group_by(Job.state))
            }
            r.lost_attempts = int(s.scalar(select(func.coalesce(func.sum(Job.lost_attempts), 0))))
            rows = s.execute(
                select(Study.study_uid, func.count(Report.id), func.min(Report.created_at))
                .select_from(Study)
                .outerjoin(Job, Job.study_id == Study.id)
                .outerjoin(Report, Report.job_id == Job.id)
                .group_by(Study.study_uid)
            ).all()
        first_sr = {uid: (n, created) for uid, n, created in rows}
        reports_dir = self.node.storage / "reports"
        for uid, sent in self.sent_at.items():
            n, created = first_sr.get(uid, (0, None))
            r.reports[uid] = n
            r.sr_files[uid] = len(list((reports_dir / uid).glob("*.dcm")))
            if created is not None:
                created = created if created.tzinfo else created.replace(tzinfo=UTC)
                r.seconds_to_sr.append((created - sent).total_seconds())


def run_soak(folder: Path, model: Path, config: SoakConfig, log=print) -> SoakResult:
    """Run one soak in ``folder`` and return what it measured (the node is stopped after)."""
    studies = make_studies(folder / "studies", config)
    soak = _Soak(folder, model, config, log)
    began = time.monotonic()
    try:
        soak.start()
        supervisor = threading.Thread(target=soak.supervise, daemon=True)
        supervisor.start()
        per_sender = -(-config.studies // config.senders)
        interval = config.send_over / per_sender if config.send_over else 0.0
        senders = [
            threading.Thread(target=soak.send, args=(studies[i :: config.senders], began, interval))
            for i in range(config.senders)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        soak.senders_done.set()
        try:
            wait_until(soak.drained, "every study classified", config.drain_timeout)
        except AssertionError as exc:
            log(str(exc))
        soak.stop.set()
        supervisor.join(30)
        soak.collect()
    except BaseException:
        log(soak.node.logs())
        raise
    finally:
        soak.stop.set()
        soak.node.stop_all()
        soak.result.elapsed = time.monotonic() - began
    return soak.result
