"""The service on Ray Serve: a local 2-CPU Ray, two replicas behind Ray's HTTP proxy on loopback, gives the rows the
single server (`create_app` on one process) gives, through the same endpoints and key. One deployment for the
whole file, because Ray and its replicas take seconds to start on 2 cores; Ray is shut down after."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'cassava-edge[ray]')")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install 'cassava-edge[ray]')")
pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'cassava-edge[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install 'cassava-edge[dev]')")

from fastapi.testclient import TestClient  # noqa: E402

from cassava_edge import Classifier  # noqa: E402
from cassava_edge.errors import OptionError  # noqa: E402
from cassava_edge.serve import ServeSettings, create_app  # noqa: E402
from cassava_edge.serve_ray import app_builder, build_app  # noqa: E402

KEY = "ray-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
APP_NAME = "cassava-edge-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_service() -> Iterator[str]:
    """Two replicas on a local 2-CPU Ray, Ray's proxy on 127.0.0.1; its base URL."""
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(2, api_key=KEY), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}/"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def single_server() -> Iterator[TestClient]:
    """The single server, as `cassava-edge serve` runs it."""
    with TestClient(create_app(Classifier(), ServeSettings(api_key=KEY))) as client:
        yield client


def test_two_replicas_answer_as_the_single_server(
    ray_service: str, single_server: TestClient, cassava_photos: list[Path], field_rows: list[dict[str, str]],
    data_dir: Path,
) -> None:
    status = serve.status().applications[APP_NAME]
    (deployment,) = status.deployments.values()
    assert deployment.replica_states == {"RUNNING": 2}

    field = [data_dir / "field" / "images" / row["image_id"] for row in field_rows[:3]]
    uploads = [(photo.name, photo.read_bytes()) for photo in [*cassava_photos, *field]]
    uploads.append(("notes.jpg", b"not a photo"))
    expected = [
        single_server.post("/v1/classify", files={"image": upload}, headers=AUTH).json() for upload in uploads
    ]
    assert {row["status"] for row in expected} >= {"ok", "failed"}

    with httpx.Client(base_url=ray_service, headers=AUTH, timeout=120) as client:
        # Concurrent requests, so that @serve.batch puts several photos in one step, spread over both replicas.
        with ThreadPoolExecutor(len(uploads)) as pool:
            answers = list(pool.map(lambda upload: client.post("v1/classify", files={"image": upload}), uploads))
        assert [answer.status_code for answer in answers] == [200 if row["ok"] else 422 for row in expected]
        assert [answer.json() for answer in answers] == expected

        batch = client.post("v1/classify/batch", files=[("image", upload) for upload in uploads[:3]])
        assert batch.status_code == 200
        assert batch.json() == {"results": expected[:3]}

        # The same options, checked the same way.
        refused = client.post("v1/classify", params={"tta": "sideways"}, files={"image": uploads[0]})
        same = single_server.post("/v1/classify", params={"tta": "sideways"}, files={"image": uploads[0]}, headers=AUTH)
        assert refused.status_code == same.status_code == 422
        assert refused.json() == same.json()

        # The same model and plan; only onnxruntime's threads differ: a replica uses the CPU it reserved.
        replica_model = client.get("v1/model").json()
        single_model = single_server.get("/v1/model", headers=AUTH).json()
        assert replica_model.pop("session")["intra_op_threads"] == 1
        single_model.pop("session")
        assert replica_model == single_model
        assert client.get("readyz").status_code == 200
        # (Which replica answers is Ray's choice, so its counts are not checked here: the test below does.)
        assert "cassava_edge_views_per_run" in client.get("metrics").text
        assert "Cassava leaf check" in client.get("").text

        # The key rules hold behind Ray's proxy too.
        assert httpx.get(ray_service + "healthz").status_code == 200
        assert httpx.post(ray_service + "v1/classify", files={"image": uploads[0]}).status_code == 401
        assert httpx.get(ray_service + "v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_deployment_without_a_key_is_refused_unless_asked_for() -> None:
    with pytest.raises(OptionError, match="API key"):
        build_app(2)
    build_app(2, insecure_no_auth=True)  # said explicitly: allowed


def test_serve_run_arguments_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASSAVA_EDGE_API_KEY", KEY)
    app_builder({"replicas": "2", "tta": "flip", "max_queue": "16"})
    with pytest.raises(OptionError, match="replica: unknown argument"):
        app_builder({"replica": "2"})
    with pytest.raises(OptionError, match="replicas: not a int"):
        app_builder({"replicas": "two"})


def test_the_steps_of_serve_batch_fill_the_apps_view_histograms() -> None:
    """The steps @serve.batch runs are reported to the app (`Service.observe_step`): views per step and per
    onnxruntime run. Without a Ray cluster: the replica's own class, and the batched method called directly (outside
    a replica, @serve.batch's queue cannot start), as Ray calls it with the views of 2 photos."""
    import numpy as np
    from prometheus_client import generate_latest

    from cassava_edge.serve_ray import CassavaService

    # The class as written, under the wrappers of @serve.deployment and @serve.ingress.
    replica_class = next(k for k in CassavaService.func_or_class.__mro__ if "infer_photos" in vars(k))
    replica = replica_class({}, ServeSettings(), 8)
    app = replica.__serve_build_asgi_app__()
    assert replica.classifier.session.chunk_size == 4
    height, width = replica.classifier.metadata.crop_size
    views = [np.zeros((4, height, width, 3), np.float32), np.zeros((2, height, width, 3), np.float32)]
    rows = asyncio.run(vars(replica_class)["infer_photos"].__wrapped__(replica, views))
    assert [len(photo_rows) for photo_rows in rows] == [4, 2]
    metrics = generate_latest(app.state.service.metrics.registry).decode()
    # One step of 6 views, run by onnxruntime as 4 + 2.
    assert "cassava_edge_views_per_step_count 1.0" in metrics and "cassava_edge_views_per_step_sum 6.0" in metrics
    assert "cassava_edge_views_per_run_count 2.0" in metrics and "cassava_edge_views_per_run_sum 6.0" in metrics
