"""`maskclip label --engine ray` on one local Ray cluster (2 CPUs, CPU actors) shared by the module,
with the tiny random CLIP; object-store input from moto's S3 server (a real HTTP endpoint)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="the Ray engine's tests need the [ray] extra: pip install 'maskclip-cli[ray]'")
psutil = pytest.importorskip("psutil")  # ray brings it (its third-party folder)

from labelling.helpers import make_images, manifest_lines, tiny_segmenter  # noqa: E402

from maskclip_cli.cli import app  # noqa: E402
from maskclip_cli.labelling.label_job import LabelOptions, label_folder  # noqa: E402
from maskclip_cli.labelling.ray_engine import label_with_ray  # noqa: E402
from maskclip_cli.labelling.ray_options import RayOptions  # noqa: E402
from maskclip_cli.synthetic.assets import CHECKPOINT, MODEL_CONFIG  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "maskclip-images"
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's standalone S3 server; its address and credentials in the environment that the Ray
    cluster (started after it) hands to its workers."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    """One local cluster for the module (starting one costs seconds); workers import this checkout."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), saved] if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    os.environ.pop("PYTHONPATH") if saved is None else os.environ.__setitem__("PYTHONPATH", saved)


def _outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes by relative path (the lock folder aside)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".maskclip-locks" not in p.parts}


def _poison(images: Path) -> None:
    (images / "poisoned.jpg").write_bytes(b"\xff\xd8 not really a jpeg")


def test_s3_input_matches_local_engine(tmp_path, cluster, s3_endpoint):
    """Images read from an S3 bucket by Ray tasks and labelled by an actor give byte-identical maps and
    manifest lines to the local engine on the same files; a poisoned image is recorded, the rest done.
    float16 .npy confidence: the actors write in the run's recorded formats."""
    import boto3

    images = make_images(tmp_path / "images")
    _poison(images)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for path in images.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=BUCKET, Key=f"set/{path.relative_to(images).as_posix()}", Body=path.read_bytes())
    s3.put_object(Bucket=BUCKET, Key="set/x/../../../escape.png", Body=(images / "e.png").read_bytes())  # a hostile key
    options = LabelOptions(workers=0, confidence_format="npy")
    local = label_folder(tiny_segmenter(), images, tmp_path / "local", options)
    summary = label_with_ray(tiny_segmenter(), f"s3://{BUCKET}/set", tmp_path / "ray", options, RayOptions(batch_size=3))
    assert (summary.total, summary.labelled, summary.failed) == (local.total, local.labelled, local.failed) == (8, 7, 1)
    assert [s for s, _ in summary.failures] == ["poisoned.jpg"]
    ray_files, local_files = _outputs(tmp_path / "ray"), _outputs(tmp_path / "local")
    assert ray_files.keys() == local_files.keys()
    assert any(k.startswith("confidence/") and k.endswith(".npy") for k in ray_files)
    assert all(ray_files[k] == local_files[k] for k in ray_files if k != "manifest.jsonl")
    ray_lines, local_lines = manifest_lines(tmp_path / "ray"), manifest_lines(tmp_path / "local")
    assert [e for e in ray_lines if e["status"] == "ok"] == [e for e in local_lines if e["status"] == "ok"]
    (bad,) = [e for e in ray_lines if e["status"] == "error"]
    assert bad["source"] == "poisoned.jpg" and "Cannot read poisoned.jpg" in bad["error"]
    assert not list(tmp_path.rglob("escape*"))  # left out, nothing written outside the output folder


@pytest.mark.slow
def test_write_error_stops_the_job_in_one_line_unless_allowed(tmp_path, cluster):
    """An actor that cannot write (labels/ is a file) fails its block: with --max-failures 0 the job stops
    with the writer's message; with -1 it finishes, and those images are counted, not recorded."""
    from maskclip_cli.core.errors import MaskCLIPError

    images = make_images(tmp_path / "images", {"a.png": (32, 32), "b.png": (40, 32)})
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels").write_text("not a folder")
    with pytest.raises(MaskCLIPError, match="The Ray job stopped: Cannot write the outputs of"):
        label_with_ray(tiny_segmenter(), images, out, LabelOptions(workers=0, batch_size=1), RayOptions(batch_size=1))
    summary = label_with_ray(tiny_segmenter(), images, out, LabelOptions(workers=0, batch_size=1),
                             RayOptions(batch_size=1, max_failures=-1))
    assert (summary.labelled, summary.failed) == (0, 2)
    assert not [e for e in manifest_lines(out) if e["status"] == "ok"]


def _cli(images: Path, out: Path, *extra: str) -> list[str]:
    """The label command with the bundled tiny CLIP (fixed weights: every process builds the same model)."""
    return ["label", str(images), "--out", str(out), "--model", str(MODEL_CONFIG), "--checkpoint", str(CHECKPOINT),
            "--no-progress", "--short-side", "32", "--templates", "simple", "--classes", "cat,dog,tree", "--device", "cpu",
            *extra]


def _wait_for_lines(manifest: Path, at_least: int, proc: subprocess.Popen | None = None, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= at_least:
            return len(manifest.read_text().splitlines())
        assert proc is None or proc.poll() is None, proc.stdout.read() if proc.stdout else "driver ended"
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} manifest line(s) in {timeout} s")


def _exactly_once_like_local(out: Path, local: Path) -> None:
    lines = manifest_lines(out)
    assert sorted(e["source"] for e in lines) == sorted(e["source"] for e in manifest_lines(local))
    assert len({e["source"] for e in lines}) == len(lines)  # one line per image
    assert _outputs(out) == _outputs(local)


@pytest.mark.slow
def test_killed_driver_resumes(tmp_path, cluster):
    """kill -9 of the driver mid-run loses nothing recorded; the rerun labels only the rest, and every
    image ends up exactly once, as the local engine labels it."""
    images = make_images(tmp_path / "images", {f"img{i:02d}.png": (40 + i, 48) for i in range(30)})
    out = tmp_path / "ray"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    driver = subprocess.Popen([sys.executable, "-m", "maskclip_cli", *_cli(images, out, "--engine", "ray",
                               "--ray-address", cluster, "--batch-size", "1", "--ray-batch-size", "1")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recorded = _wait_for_lines(out / "manifest.jsonl", 1, driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert recorded < 30, "the run ended before it was killed"
    result = runner.invoke(app, _cli(images, out, "--engine", "ray", "--batch-size", "1", "--ray-batch-size", "4"))
    assert result.exit_code == 0, result.output
    skipped = int(result.output.split(" skipped")[0].rsplit(", ", 1)[1])
    assert skipped >= recorded  # finished images were not scheduled again
    assert runner.invoke(app, _cli(images, tmp_path / "local", "--workers", "0", "--batch-size", "1")).exit_code == 0
    _exactly_once_like_local(out, tmp_path / "local")


def _labeller_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and any("_Labeller" in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.slow
def test_killed_actor_is_retried(tmp_path, cluster):
    """An actor killed mid-run is restarted by Ray and its batch retried: nothing lost, nothing twice."""
    images = make_images(tmp_path / "images", {f"img{i:02d}.png": (40 + i, 48) for i in range(30)})
    out = tmp_path / "ray"
    results = {}
    run = threading.Thread(target=lambda: results.setdefault("summary", label_with_ray(
        tiny_segmenter(), images, out, LabelOptions(workers=0, batch_size=1), RayOptions(batch_size=1))))
    run.start()
    recorded = _wait_for_lines(out / "manifest.jsonl", 1)
    actors = _labeller_processes()
    assert actors, "no labelling actor found"
    for actor in actors:
        actor.kill()  # SIGKILL, as a lost node
    run.join(timeout=300)
    assert recorded < 30, "the run ended before the actor was killed"
    summary = results["summary"]
    assert (summary.labelled, summary.failed) == (30, 0)
    label_folder(tiny_segmenter(), images, tmp_path / "local", LabelOptions(workers=0, batch_size=1))
    _exactly_once_like_local(out, tmp_path / "local")


# -- bad input: one line, exit 2, nothing written --------------------------------------------------


def _one_error_line(output: str, text: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], output


def test_output_not_visible_on_a_node_stops_before_anything_is_written(tmp_path, cluster, monkeypatch):
    """A task on each node that can host an actor looks for the driver's probe file in --out. Here the probe
    is gone before they look, as on a node that does not mount the folder: one line, exit 2, and neither
    the lock, classes.json nor the folder itself is left."""
    from maskclip_cli.labelling import label_job, ray_engine

    @contextmanager
    def unseen_probe(out_dir: Path):
        with label_job.write_probe(out_dir) as probe:
            probe.unlink()
            yield probe

    monkeypatch.setattr(ray_engine, "write_probe", unseen_probe)
    images = make_images(tmp_path / "images", {"a.png": (32, 32)})
    result = runner.invoke(app, _cli(images, tmp_path / "out", "--engine", "ray"))
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, "is not visible on node")
    assert not (tmp_path / "out").exists()


def test_unreachable_address(tmp_path, cluster):
    images = make_images(tmp_path / "images")
    result = runner.invoke(app, _cli(images, tmp_path / "out", "--engine", "ray",
                                     "--ray-address", f"127.0.0.1:{_free_port()}"))
    assert result.exit_code == 2
    _one_error_line(result.output, "Cannot reach the Ray cluster")
    assert not (tmp_path / "out").exists()


def test_gpus_per_actor_on_a_cluster_without_gpus(tmp_path, cluster):
    """`--gpus-per-actor 1` ended in Ray's ValueError traceback (map_batches refuses batch_size=None
    with GPUs) after classes.json and the manifest were written; with a batch size given, Ray would
    wait for a GPU for ever on this cluster. One line, exit 2, nothing written."""
    images = make_images(tmp_path / "images")
    result = runner.invoke(app, _cli(images, tmp_path / "out", "--engine", "ray", "--gpus-per-actor", "1"))
    assert result.exit_code == 2
    _one_error_line(result.output, "--gpus-per-actor asks for GPUs but the Ray cluster has none")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("url, message", [("nosuchscheme://bucket/images", "Cannot open"),
                                          (f"s3://{BUCKET}-missing/images", "No images")])
def test_object_store_errors(tmp_path, cluster, url, message):
    result = runner.invoke(app, _cli(url, tmp_path / "out", "--engine", "ray"))  # type: ignore[arg-type]
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, message)
    assert not (tmp_path / "out").exists()
