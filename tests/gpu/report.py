"""Run the GPU checks and write docs/gpu.md: the machine and versions, the gpu tests, the FSDP demo (FSDP1 and FSDP2,
one process and one per GPU) and notebook 10 in both languages, each with its wall time and the per-rank figures.

    python tests/gpu/report.py            # what tests/gpu/run.sh calls once the environment is installed

Exits non-zero when a check failed, after writing the page (the failure is on it). The page is rewritten after every
check, so a run stopped from outside still leaves what it measured. `VLA_GPU_BUDGET_S` (default 480) bounds the whole
run: a check that would start with too little time left is reported as skipped. `VLA_GPU_COMMIT` names the commit
when the checkout has no git history (a copied working tree).
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gpu.md"
RANK_LINE = re.compile(r"rank (\d+) holds ([\d,]+) of [\d,]+ parameters \(([\d.]+)%\), ([\d,]+) bytes on (\S+); "
                       r"peak GPU memory: (?:([\d.]+) MiB after sharding, ([\d.]+) MiB while training|n/a on the CPU)")


DEADLINE = time.monotonic() + float(os.environ.get("VLA_GPU_BUDGET_S", "480"))
# Below this many seconds left, a check is not started: it could not finish, and a killed run reports nothing.
MINIMUM_S = 30


def time_left(limit: float) -> float:
    """Seconds a check may take: its own limit, or what is left of the run's budget if that is less."""
    return min(limit, DEADLINE - time.monotonic())


def run(command: list[str], env: dict, limit: float) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    timeout = time_left(limit)
    if timeout < MINIMUM_S:
        return 125, "", f"skipped: {timeout:.0f} s of the run's budget left", 0.0
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err, time.perf_counter() - started
    except subprocess.TimeoutExpired:
        # SIGTERM first: torchrun forwards it to its workers, which run in sessions of their own and would outlive
        # a SIGKILL of the agent, holding their GPU memory.
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        return 124, out, f"timed out after {timeout:.0f} s\n{err}", time.perf_counter() - started


def machine() -> list[tuple[str, str]]:
    import transformers

    smi_text = "not available"
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        smi_text = smi.stdout.strip().replace("\n", "; ") if smi.returncode == 0 else smi.stderr.strip()[:200]
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(f"{props.name} (compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB)")
    nccl = ".".join(map(str, torch.cuda.nccl.version()))
    commit = os.environ.get("VLA_GPU_COMMIT", "")
    if not commit and shutil.which("git"):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return [
        ("GPUs", f"{len(gpus)} × " + "; ".join(sorted(set(gpus)))),
        ("native bf16 (GPU 0)", str(torch.cuda.is_bf16_supported(including_emulation=False))),
        ("nvidia-smi", smi_text),
        ("Python", platform.python_version()),
        ("torch / CUDA / NCCL", f"{torch.__version__} / {torch.version.cuda} / {nccl}"),
        ("transformers", transformers.__version__),
        ("commit", commit or "unknown"),
    ]


def gpu_tests(env: dict) -> dict:
    code, out, err, seconds = run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-rA", "-p", "no:cacheprovider"], env, 240)
    summary = next((line.strip("= ") for line in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed|errors?|skipped)", line)), "no summary")
    if code in (124, 125):
        summary = err.splitlines()[0]
    return {"name": "gpu tests (`pytest -m gpu tests/gpu`)", "ok": code == 0, "result": summary, "seconds": seconds,
            "log": out[-6000:] + err[-2000:]}


def demo_runs(env: dict, checks: list, page) -> list[dict]:
    runs = []
    for nproc in sorted({1, torch.cuda.device_count()}):
        for version in (1, 2):
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                       "-m", "vla_backbone.fsdp", "--fsdp", str(version), "--steps", "3"]
            code, out, err, seconds = run(command, env, 120)
            precision = re.search(r"^precision: (\S+)", out, re.M)
            effective = re.search(r"effective (.+)$", out, re.M)
            runs.append({
                "name": f"demo FSDP{version}, {nproc} process(es)", "ok": code == 0, "seconds": seconds,
                "result": "ok" if code == 0 else err.splitlines()[0] if code in (124, 125) else f"exit {code}",
                "precision": precision.group(1) if precision else "?",
                "effective": re.sub(r" \(one rank per node.*", "", effective.group(1)) if effective else "?",
                "ranks": RANK_LINE.findall(out),
                "losses": re.findall(r"step \d+: loss ([\d.]+)", out),
                "log": out if code == 0 else out[-3000:] + err[-3000:],
            })
            checks.append(runs[-1])
            page()
    return runs


def notebook_runs(env: dict, checks: list, page) -> list[dict]:
    import nbclient
    import nbformat

    runs = []
    for lang in ("en", "zh"):
        path = ROOT / "notebooks" / lang / "10_fsdp.ipynb"
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        error = ""
        cell_limit = time_left(240)
        try:
            if cell_limit < MINIMUM_S:
                raise TimeoutError(f"skipped: {cell_limit:.0f} s of the run's budget left")
            client = nbclient.NotebookClient(nb, timeout=int(cell_limit), kernel_name="python3",
                                             resources={"metadata": {"path": str(path.parent)}})
            client.execute(env=env)
        except Exception as exc:  # the page reports the failure; the exit code says it too
            error = f"{type(exc).__name__}: {str(exc)[-3000:]}"
        gpu_cell = next((cell for cell in nb.cells if cell.cell_type == "code" and "gpu_outputs" in cell.source), None)
        gpu_text = "".join(o.get("text", "") for o in gpu_cell.get("outputs", []) if o.get("output_type") == "stream") if gpu_cell else ""
        runs.append({"name": f"notebooks/{lang}/10_fsdp.ipynb", "ok": not error, "seconds": time.perf_counter() - started,
                     "result": "ok" if not error else "failed", "log": gpu_text if not error else error})
        checks.append(runs[-1])
        page()
    return runs


def mib(value: str) -> str:
    return f"{value} MiB" if value else "n/a"


def write_page(facts, checks, demos, notebooks) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# The GPU path, measured",
        "",
        f"Written by `bash tests/gpu/run.sh` on {now}; run it again on a GPU machine to refresh this page (it",
        "overwrites it; its header says how to install on a machine without the package registry). Every figure",
        "below was measured in that run.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in facts],
        "",
        "## Checks",
        "",
        "| check | result | wall time |",
        "|---|---|---|",
        *[f"| {c['name']} | {c['result']} | {c['seconds']:.1f} s |" for c in checks],
        "",
        "## The demo: each rank's share and peak GPU memory",
        "",
        "`torchrun --standalone --nproc_per_node N -m vla_backbone.fsdp --fsdp V --steps 3` on the tiny Llama-2 replica.",
        "Peak memory is `torch.cuda.max_memory_allocated` of each rank: once for wrapping and sharding, once for the",
        "three training steps (after a reset). On a model this small (16 MB in fp32) the training peak is mostly",
        "fixed cost (optimizer state, gradients, the cuBLAS workspace), not a measure of sharding.",
        *(["", "One GPU: every run here has world size 1, so FSDP1 runs `NO_SHARD` and FSDP2 a mesh of one; sharding",
           "across ranks (all-gather, reduce-scatter, 1/N shares) is exercised only on CPU processes over gloo, by",
           "`tests/test_fsdp.py`."] if torch.cuda.device_count() == 1 else []),
        "",
        "| run | precision | effective sharding | rank | parameters held | bytes | peak after sharding | peak while training | losses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for demo in demos:
        for rank, held, share, nbytes, device, after, training in demo["ranks"]:
            lines.append(f"| {demo['name'][5:]} | {demo['precision']} | {demo['effective']} | {rank} ({device}) | {held} ({share}%) | "
                         f"{nbytes} | {mib(after)} | {mib(training)} | {', '.join(demo['losses'])} |")
        if not demo["ranks"]:
            lines.append(f"| {demo['name'][5:]} | failed | | | | | | | |")
    for notebook in notebooks:
        lines += ["", f"## {notebook['name']}: the GPU section's output", "", "```", notebook["log"].rstrip(), "```"]
    failed = [c for c in checks if not c["ok"]]
    for check in failed:
        lines += ["", f"## Failed: {check['name']}", "", "```", check["log"].rstrip(), "```"]
    DOC.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible to torch: tests/gpu/report.py only measures the GPU path")
    with tempfile.TemporaryDirectory(prefix="vla_backbone_home_") as home:
        return measure(home)


def measure(home: str) -> int:
    """Run every check with `home` as the replica cache, rewriting docs/gpu.md after each; 0 when all passed."""
    # As conftest.py does for nbmake: a headless kernel takes explore()'s plain path (jupyter/nbclient#312).
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLA_BACKBONE_HOME": home, "VLA_BACKBONE_WIDGETS": "0",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    facts = machine()
    checks: list[dict] = []

    def page() -> None:
        write_page(facts, checks, [c for c in checks if c["name"].startswith("demo")],
                   [c for c in checks if c["name"].startswith("notebooks/")])

    try:
        checks.append(gpu_tests(env))
        page()
        demo_runs(env, checks, page)
        notebook_runs(env, checks, page)
    finally:
        page()
    for check in checks:
        print(f"{'ok    ' if check['ok'] else 'FAILED'} {check['name']}: {check['result']} ({check['seconds']:.1f} s)")
    print(f"wrote {DOC}")
    return 0 if all(check["ok"] for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
