"""The SLURM profile (workflow/profiles/slurm): it parses, names only resources snakemake-executor-plugin-slurm reads,
and the paper preset's training, merge and evaluation jobs reach sbatch with the intended flags. Fake SLURM commands
on PATH record what the plugin calls; no cluster is needed. One more test submits a smoke job to the single-node
cluster of workflow/profiles/slurm/single-node-cluster.sh and runs only where that cluster answers."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("snakemake_executor_plugin_slurm", reason="the slurm extra: pip install -e '.[slurm]'")

import snakemake_executor_plugin_slurm
import snakemake_executor_plugin_slurm_jobstep
from snakemake.profiles import ProfileConfigFileParser

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
RULES = ROOT / "workflow" / "rules"
QWEN = "results/qwen1.5-7b/qwen1.5-7b"
TRAIN_TARGET = f"{QWEN}/dpo/adamw/beta~0.1/seed~0/model"
MERGE_SOURCE = f"{QWEN}/dpo/adamw/beta~0.01/seed~0/model"  # a finished cell the merge reads
MERGE_TARGET = f"{QWEN}/dpo/adamw/beta~0.01/seed~0/merge/dare/density~0.5_weight~0.5/model"
EVALUATE_TARGET = f"{QWEN}/sft/eval/metrics.json"
LOCAL_CLUSTER = "onmerge-local"  # ClusterName in single-node-cluster.sh's slurm.conf
SLURMCTLD_PORT = 6817  # SLURM's default, which that slurm.conf keeps

# Stands in for every SLURM command the plugin runs: appends {command, args, pid} to $FAKE_SLURM_LOG, answers sbatch
# with a job id, sinfo with a default partition `cpu`, sacctmgr with the account `proj`, scontrol with the two
# settings the plugin reads; squeue and sacct know no jobs, so submitted jobs stay queued until the test stops.
FAKE_SLURM = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

name = Path(sys.argv[0]).name
with open(os.environ["FAKE_SLURM_LOG"], "a") as log:
    log.write(json.dumps({{"command": name, "args": sys.argv[1:], "pid": os.getpid()}}) + "\\n")
answers = {{
    "sbatch": str(os.getpid()),
    "sinfo": "PARTITION\\ncpu*\\ngpu",
    "sacctmgr": "proj",
    "scontrol": "MinJobAge = 300 sec\\nMaxArraySize = 1001",
}}
if name in answers:
    print(answers[name])
"""
SLURM_COMMANDS = ("sbatch", "sinfo", "sacct", "sacctmgr", "sshare", "scontrol", "squeue", "scancel")


def parse_profile() -> dict[str, list[str] | str]:
    """The profile as Snakemake reads it into command-line arguments (after its yte templating)."""
    with (PROFILE / "config.yaml").open() as stream:
        return ProfileConfigFileParser().parse(stream)


def resource_names(assignments: list[str]) -> set[str]:
    """`name=value` (default-resources) or `rule:name=value` (set-resources) -> the resource names."""
    return {assignment.split("=", 1)[0].split(":")[-1] for assignment in assignments}


def plugin_resource_names() -> set[str]:
    """Every resource the SLURM plugin and its job-step plugin look up on a job, read from their sources."""
    sources = [
        path
        for package in (snakemake_executor_plugin_slurm, snakemake_executor_plugin_slurm_jobstep)
        for path in Path(package.__file__).parent.glob("*.py")
    ]
    text = "\n".join(path.read_text() for path in sources)
    looked_up = set(re.findall(r"resources\.get\(\s*[\"'](\w+)[\"']", text))  # job.resources.get("gpu")
    attributes = set(re.findall(r"resources\.(\w+)", text)) - {"get", "keys"}  # job.resources.runtime
    return looked_up | attributes


def rule_resources() -> dict[str, set[str]]:
    """The resources each rule declares in workflow/rules/ (the worlds' rules in worlds/)."""
    declared: dict[str, set[str]] = {}
    for path in RULES.rglob("*.smk"):
        for rule, body in re.findall(r"^\s*rule (\w+):\n(.*?)(?=^\s*rule \w+:|\Z)", path.read_text(), re.M | re.S):
            block = re.search(r"^\s*resources:\n((?:\s+\w+=.*\n)+)", body, re.M)
            names = set(re.findall(r"^\s+(\w+)=", block.group(1), re.M)) if block else set()
            declared.setdefault(rule, set()).update(names)  # toy and paper variants of a rule share its name
    return declared


def test_profile_takes_partition_and_account_from_the_environment_only_when_set(monkeypatch):
    monkeypatch.delenv("ONMERGE_SLURM_PARTITION", raising=False)
    monkeypatch.delenv("ONMERGE_SLURM_ACCOUNT", raising=False)
    unset = parse_profile()
    assert unset["executor"] == "slurm"
    assert not resource_names(unset["default-resources"]) & {"slurm_partition", "slurm_account"}

    monkeypatch.setenv("ONMERGE_SLURM_PARTITION", "gpu-long")
    monkeypatch.setenv("ONMERGE_SLURM_ACCOUNT", "proj")
    assert {"slurm_partition=gpu-long", "slurm_account=proj"} <= set(parse_profile()["default-resources"])


def test_profile_and_rules_name_only_resources_the_plugin_reads_and_rules_that_exist(monkeypatch):
    monkeypatch.setenv("ONMERGE_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("ONMERGE_SLURM_ACCOUNT", "proj")
    profile = parse_profile()
    known = plugin_resource_names()
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb", "gpu", "nodes", "cpus_per_gpu"} <= known
    assert resource_names(profile["default-resources"]) <= known
    assert resource_names(profile["set-resources"]) <= known
    declared = rule_resources()
    assert {"gpu", "runtime", "mem_mb"} <= declared["train"]
    assert set().union(*declared.values()) <= known
    assert {assignment.split(":")[0] for assignment in profile["set-resources"]} <= declared.keys()


def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds the fake SLURM commands first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "fake_slurm.py"
    fake.write_text(FAKE_SLURM)
    fake.chmod(0o755)
    for command in SLURM_COMMANDS:
        (bin_dir / command).symlink_to(fake)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ONMERGE_SLURM_", "SLURM_"))}
    return env | {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "FAKE_SLURM_LOG": str(tmp_path / "calls.jsonl")}


def paper_inputs(workdir: Path) -> None:
    """What the three target jobs read, older than any output, so that exactly those jobs are ready to submit."""
    for directory in (f"{QWEN}/sft/model", f"{QWEN}/base/model", "results/qwen1.5-7b/preferences", MERGE_SOURCE):
        (workdir / directory).mkdir(parents=True)
    for name in ("train", "test", "train_unpaired", "test_unpaired"):
        (workdir / f"results/qwen1.5-7b/preferences/{name}.json").write_text("[]")
    past = time.time() - 3600
    for path in workdir.rglob("*"):
        os.utime(path, (past, past))
    os.utime(workdir / MERGE_SOURCE, (past + 60, past + 60))  # the trained cell is newer than what it read


def submissions(env: dict[str, str], workdir: Path, targets: list[str], expected: int) -> list[dict]:
    """Run the workflow through the profile until `expected` sbatch calls are recorded, then stop it; the calls."""
    log = Path(env["FAKE_SLURM_LOG"])
    command = [
        *(sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")),
        *("--directory", str(workdir), "--workflow-profile", str(PROFILE), *targets),
        *("--config", "preset=qwen1.5-7b"),  # last: --config takes every argument after it
    ]
    output = workdir / "snakemake.log"
    with output.open("w") as stream:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            if sum(call["command"] == "sbatch" for call in calls) >= expected:
                return calls
            time.sleep(0.2)
        pytest.fail(f"{expected} submissions expected; snakemake said:\n{output.read_text()[-4000:]}")
    finally:
        process.kill()
        process.wait()


def sbatch_by_rule(calls: list[dict]) -> dict[str, list[str]]:
    """Each sbatch call's arguments (without the wrapped job command), by the rule named in its --comment."""
    by_rule = {}
    for call in calls:
        if call["command"] == "sbatch":
            args = [arg for arg in call["args"] if not arg.startswith("--wrap")]
            rule = re.match(r"rule_([a-z_]+?)(?:_wildcards_|$)", args[args.index("--comment") + 1]).group(1)
            by_rule[rule] = args
    return by_rule


def flags(args: list[str], *names: str) -> tuple[str | None, ...]:
    """The value of each `NAME VALUE` or `NAME=VALUE` among sbatch's arguments; None where absent."""

    def value(name: str) -> str | None:
        for index, arg in enumerate(args):
            if arg == name:
                return args[index + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
        return None

    return tuple(value(name) for name in names)


def test_paper_jobs_reach_sbatch_with_one_node_their_gpus_cpus_memory_and_time(tmp_path):
    env = fake_slurm(tmp_path) | {"ONMERGE_SLURM_PARTITION": "gpu", "ONMERGE_SLURM_ACCOUNT": "proj"}
    workdir = tmp_path / "work"
    paper_inputs(workdir)
    calls = submissions(env, workdir, [TRAIN_TARGET, MERGE_TARGET, EVALUATE_TARGET], expected=3)
    jobs = sbatch_by_rule(calls)
    assert jobs.keys() == {"train", "merge", "evaluate"}
    for args in jobs.values():
        assert flags(args, "-p", "-A", "--nodes") == ("gpu", "proj", "1")
    # the preset's training section: 8 GPUs on one node, 8 CPUs per GPU (a rank each, 8 torch threads), 480 GB, 24 h
    train = flags(jobs["train"], "--gpus", "--cpus-per-gpu", "--mem", "-t", "--cpus-per-task", "--ntasks")
    assert train == ("8", "8", "480000", "1440", None, None)
    assert flags(jobs["evaluate"], "--gpus", "--cpus-per-task", "--mem", "-t") == ("1", "8", "64000", "240")
    merge = flags(jobs["merge"], "--gpus", "--ntasks", "--cpus-per-task", "--mem", "-t")
    assert merge == (None, "1", "1", "96000", "120")
    validated = [call["args"] for call in calls if call["command"] == "sacctmgr"]
    assert validated and all("format=account%256" in args for args in validated)  # the account is checked


def test_without_environment_the_cluster_default_partition_and_no_account_are_used(tmp_path):
    env = fake_slurm(tmp_path)
    workdir = tmp_path / "work"
    paper_inputs(workdir)
    calls = submissions(env, workdir, [EVALUATE_TARGET], expected=1)
    evaluate = sbatch_by_rule(calls)["evaluate"]
    assert flags(evaluate, "-p", "-A") == ("cpu", None)  # sinfo's default partition; no account guessed
    assert not any(call["command"] == "sacctmgr" for call in calls)


def local_cluster_answers() -> bool:
    """True when single-node-cluster.sh's cluster is up here: its slurm.conf, its controller's port, an idle node.
    The file and the port answer at once; SLURM's own commands wait ~10 s for a controller that is down."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    if not conf.is_file() or f"ClusterName={LOCAL_CLUSTER}" not in conf.read_text().split():
        return False
    try:
        socket.create_connection(("127.0.0.1", SLURMCTLD_PORT), timeout=1).close()
        states = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "idle" in states.stdout.split()


@pytest.mark.skipif(not local_cluster_answers(), reason=f"no {LOCAL_CLUSTER} cluster (single-node-cluster.sh) here")
def test_smoke_job_runs_on_the_local_cluster_with_the_requested_resources(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ONMERGE_SLURM_", "SLURM_"))}
    target = "results/smoke/preferences/train.json"
    command = [
        *(sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)),
        *("--workflow-profile", str(PROFILE), "--slurm-status-command", "squeue", "--slurm-keep-successful-logs"),
        *("--slurm-init-seconds-before-status-checks", "2", target, "--config", "preset=smoke"),
    ]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert json.loads((tmp_path / target).read_text())
    job_id = re.search(r"submitted with SLURM jobid (\d+)", run.stdout + run.stderr).group(1)
    job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10).stdout
    assert "JobState=COMPLETED" in job
    assert "TimeLimit=01:00:00" in job and "NumNodes=1" in job and "MinMemoryNode=16000M" in job
