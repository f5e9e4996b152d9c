"""Where a Spark job's time goes, from Spark's own event log (no guesses from wall clocks).

    conf = event_log_conf(folder)       # pass as settings.spark.conf before the session starts
    ...run the job...
    rows = step_breakdown(folder)       # per job description: jobs, stages, tasks, shuffle

jobs/build_features.py tags each step's Spark jobs with a description
("build_features ds=...: <step>"), so the log's stages can be summed per step. A stage that a
job lists but never runs (its shuffle output was already there) counts as skipped.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

_WRITE = "internal.metrics.shuffle.write.bytesWritten"
_RUN = "internal.metrics.executorRunTime"
_CPU = "internal.metrics.executorCpuTime"  # ns; unlike run time, not inflated by waiting


def event_log_conf(folder: Path) -> dict[str, str]:
    """Spark settings that write an uncompressed event log of the session under folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": folder.as_uri(),
        "spark.eventLog.compress": "false",
    }


def _events(folder: Path):
    # Spark 4 rolls its event log: a folder per application, files events_<n>_<app> in it.
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open() as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # the last line of a log still being written
                    continue


def step_breakdown(folder: Path) -> dict[str, dict]:
    """Per job description: jobs, stages run and skipped, tasks, busy time (s, the union of
    the jobs' submission-to-end spans: AQE runs independent stages as concurrent jobs, so
    their sum would count time twice), executor run time (s, summed over tasks: CPU-side work)
    executor CPU time (s, summed over tasks: what a loaded machine inflates least) and
    shuffle bytes written (MiB). Jobs without a description are under ''."""
    job_desc, job_stages, job_start, job_end = {}, {}, {}, {}
    stage_done: dict[int, dict] = {}
    for ev in _events(folder):
        kind = ev.get("Event")
        if kind == "SparkListenerJobStart":
            jid = ev["Job ID"]
            job_desc[jid] = (ev.get("Properties") or {}).get("spark.job.description", "")
            job_stages[jid] = ev.get("Stage IDs", [])
            job_start[jid] = ev.get("Submission Time", 0)
        elif kind == "SparkListenerJobEnd":
            job_end[ev["Job ID"]] = ev.get("Completion Time", 0)
        elif kind == "SparkListenerStageCompleted":
            info = ev["Stage Info"]
            acc = {a.get("Name"): a.get("Value") for a in info.get("Accumulables", [])}
            stage_done[info["Stage ID"]] = {
                "tasks": info.get("Number of Tasks", 0),
                "run_ms": int(acc.get(_RUN) or 0),
                "cpu_ns": int(acc.get(_CPU) or 0),
                "write_b": int(acc.get(_WRITE) or 0),
            }
    out: dict[str, dict] = collections.defaultdict(
        lambda: dict(
            jobs=0, stages=0, skipped=0, tasks=0, job_s=0.0, run_s=0.0, cpu_s=0.0, shuffle_mib=0.0
        )
    )
    for jid, desc in job_desc.items():
        row = out[desc]
        row["jobs"] += 1
        row.setdefault("_spans", []).append((job_start[jid], job_end.get(jid, job_start[jid])))
        for sid in job_stages[jid]:
            done = stage_done.get(sid)
            if done is None:
                row["skipped"] += 1
                continue
            row["stages"] += 1
            row["tasks"] += done["tasks"]
            row["run_s"] += done["run_ms"] / 1000
            row["cpu_s"] += done["cpu_ns"] / 1e9
            row["shuffle_mib"] += done["write_b"] / 2**20
    for row in out.values():
        row["job_s"] = _covered(row.pop("_spans", [])) / 1000
    return dict(out)


def _covered(spans: list[tuple[int, int]]) -> int:
    """Length of the union of [start, end) spans."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total, reach = total + end - start, end
        elif end > reach:
            total, reach = total + end - reach, end
    return total


def format_breakdown(rows: dict[str, dict], only: str = "") -> str:
    """A text table of step_breakdown's rows whose description contains `only`."""
    head = f"{'step':<42} {'jobs':>5} {'stages':>7} {'skip':>5} {'tasks':>6} "
    head += f"{'busy s':>7} {'exec s':>7} {'cpu s':>6} {'shuf MiB':>9}"
    lines = [head]
    for desc, r in sorted(rows.items()):
        if only in desc:
            lines.append(
                f"{desc or '(untagged)':<42} {r['jobs']:>5} {r['stages']:>7} {r['skipped']:>5} "
                f"{r['tasks']:>6} {r['job_s']:>7.1f} {r['run_s']:>7.1f} {r['cpu_s']:>6.1f} "
                f"{r['shuffle_mib']:>9.1f}"
            )
    return "\n".join(lines)
