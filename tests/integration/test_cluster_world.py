"""Code nobody here wrote, against a cluster: three real guarded ComfyUI processes with the cluster queue on (one
redis-server) and a real S3 server (SeaweedFS). The client talks to instance 0, which the operator drained, so
every prompt it sends runs on another instance: ComfyUI's own script examples (their code; only an Authorization
header added, `tests/harness/script_examples.py`) and a published client library, comfy-api-simplified (its code;
only a bearer-token `auth` object and the header on its websocket connect). Each gets back the right pixels.

comfy-api-simplified waits on its socket for the `executing` message that ends its prompt, or for a `status` that
says the tenant's queue is empty, and then reads /history: a socket opened just after the prompt was queued must
count it (the cluster's counts are cached for the broadcasts; a first status and GET /prompt read them now, and a
change made on an instance is never hidden by a count made before it there)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
import requests
import websockets
from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper
from PIL import Image

from tests.harness.client import ComfyClient
from tests.harness.cluster import CLUSTER, drained, job, owner_of, running_cluster
from tests.harness.script_examples import as_caller, example, example_nodes, run_example
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
TENANT = "light"
# an idle worker asks the queue this often: long enough that a count cached by one status would still be served
# by the next one a test provokes at once (what the status test below shows is never served stale)
POLL_S = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seaweedfs):
    overrides = {"outputs": seaweedfs.outputs(prefix="world/"), "cluster": {**CLUSTER, "poll_s": POLL_S}}
    with running_cluster(tmp_path_factory, "world", 3, overrides, plugins=example_nodes()) as started, \
            drained(ComfyClient(started[0][0].url, started[1].keys["admin"])):
        yield started


@pytest.fixture
def example_caller(cluster, monkeypatch):
    """The examples' urllib and websocket calls go to instance 0 as the tenant."""
    workers, seeded, _ = cluster
    with as_caller(seeded.keys[TENANT], workers[0].url.removeprefix("http://"), monkeypatch) as address:
        yield address


def tenant(cluster) -> ComfyClient:
    workers, seeded, _ = cluster
    return ComfyClient(workers[0].url, seeded.keys[TENANT])


def ran_elsewhere(cluster, prompt_id: str) -> None:
    workers, _, store = cluster
    record = wait_until(lambda: job(store, prompt_id).get("state") == "done" and job(store, prompt_id),
                        what=f"the job record of {prompt_id}")
    assert owner_of(workers, record) is not workers[0]


def newest(cluster) -> str:
    """The tenant's prompt that finished last, as instance 0's /history pages it."""
    return list(tenant(cluster).get("/history", params={"max_items": 1}).json())[-1]


def coloured(color: int) -> dict:
    # a colour of its own each run: ComfyUI's cache would otherwise answer a repeated workflow without running it
    return {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": color}}


def rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def assert_filled(color: int, data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as picture:
        picture = picture.convert("RGB")
        assert picture.size == (64, 48)
        assert picture.tobytes() == bytes(rgb(color)) * (64 * 48)


def random_png(path: Path) -> bytes:
    """A small PNG of random pixels written to `path`; its pixels."""
    picture = Image.new("RGB", (7, 5))
    picture.putdata([tuple(random.randrange(256) for _ in range(3)) for _ in range(35)])
    picture.save(path, format="PNG")
    return picture.tobytes()


def pixels_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB").tobytes()


def test_websockets_api_example_gets_saved_and_previewed_images_made_on_another_instance(cluster, example_caller):
    """Its socket on instance 0 hears the prompt's `executing` messages relayed from where it runs; its /history
    and /view go to instance 0 too (the preview and the output are redirected to the bucket)."""
    color = random.randrange(0x1000000)
    images = run_example(example("websockets_api_example.py"), example_caller, {
        "1": coloured(color),
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "world/ws"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert sorted(images) == ["2", "3"]
    for node_images in images.values():
        assert len(node_images) == 1
        assert_filled(color, node_images[0])
    ran_elsewhere(cluster, newest(cluster))


def test_websockets_api_example_ws_images_gets_the_frames_sent_on_another_instance(cluster, example_caller):
    """ComfyUI's SaveImageWebsocket sends the picture as binary frames where the prompt runs; they reach the
    example's socket on instance 0 between the `executing` messages that name the node."""
    color = random.randrange(0x1000000)
    module = example("websockets_api_example_ws_images.py")
    images = run_example(module, example_caller, {
        "1": coloured(color),
        "save_image_websocket_node": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}})
    assert list(images) == ["save_image_websocket_node"]
    assert len(images["save_image_websocket_node"]) == 1
    assert_filled(color, images["save_image_websocket_node"][0])
    ran_elsewhere(cluster, newest(cluster))


def test_basic_api_example_queues_an_upload_that_another_instance_loads(cluster, example_caller, tmp_path):
    """The example only posts (to its built-in address, pointed at instance 0) and reads no answer; the tenant's
    history on instance 0 then shows the prompt, and its output, made elsewhere from the upload, has the upload's
    pixels."""
    pixels = random_png(tmp_path / "basic.png")
    client = tenant(cluster)
    answer = client.upload_image(tmp_path / "basic.png")
    assert answer.status_code == 200, answer.text
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": answer.json()["name"]}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "world/basic"}}}
    example("basic_api_example.py")["queue_prompt"](workflow)
    found = wait_until(lambda: [(pid, entry) for pid, entry in client.get("/history").json().items()
                                if entry["prompt"][2] == workflow], what="the example's prompt in the history")
    (prompt_id, entry), = found
    saved = entry["outputs"]["2"]["images"][0]
    shown = client.get("/view", params=saved)
    assert shown.status_code == 200 and pixels_of(shown.content) == pixels
    ran_elsewhere(cluster, prompt_id)


class Bearer(requests.auth.AuthBase):
    """What the library is given in place of its user and password (the guard takes API keys as bearer tokens);
    requests drops it on a redirect to another host, as it drops the library's own Basic auth."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.key}"
        return request


@pytest.fixture
def library(cluster, monkeypatch) -> ComfyApiWrapper:
    workers, seeded, _ = cluster
    key = seeded.keys[TENANT]
    connect = websockets.connect

    def connect_with_header(*args, **options):
        return connect(*args, additional_headers={"Authorization": f"Bearer {key}"}, **options)

    monkeypatch.setattr(websockets, "connect", connect_with_header)
    api = ComfyApiWrapper(workers[0].url)
    api.auth = Bearer(key)
    return api


@pytest.mark.timeout(180)  # the library waits on its socket without a deadline of its own
def test_comfy_api_simplified_uploads_queues_and_downloads_prompts_run_elsewhere_one_after_another(
        cluster, library, tmp_path):
    """Its upload, then its queue-and-wait twice in a row (each opens its socket after queueing), read the output
    through instance 0; the second run starts within a poll of the first's end, when a stale count would say the
    queue is already empty."""
    workflow = ComfyWorkflowWrapper({
        "1": {"class_type": "LoadImage", "inputs": {"image": ""}, "_meta": {"title": "Load"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "world/lib"},
              "_meta": {"title": "Save"}}})
    for run in range(2):
        pixels = random_png(tmp_path / f"lib{run}.png")
        uploaded = library.upload_image(tmp_path / f"lib{run}.png")
        assert uploaded["subfolder"] == "default_upload_folder"
        workflow.set_node_param("Load", "image", f"{uploaded['subfolder']}/{uploaded['name']}")
        images = library.queue_and_wait_images(workflow, "Save")
        assert len(images) == 1
        assert pixels_of(next(iter(images.values()))) == pixels
        ran_elsewhere(cluster, newest(cluster))


def first_status(client: ComfyClient, client_id: str) -> tuple[object, int]:
    socket = client.websocket(client_id)
    message = json.loads(socket.recv())
    assert message["type"] == "status"
    return socket, message["data"]["status"]["exec_info"]["queue_remaining"]


def next_count(socket) -> int:
    """The queue count of the next `status` message the socket receives."""
    socket.settimeout(30)
    while (message := json.loads(socket.recv()))["type"] != "status":
        pass
    return message["data"]["status"]["exec_info"]["queue_remaining"]


def sleeping(seconds: float, tag: str) -> dict:
    return {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": seconds, "tag": tag}}}


def test_a_socket_opened_after_its_prompt_was_queued_elsewhere_counts_it(cluster):
    """Instance 1 has just counted the tenant's queue (a socket's first status: empty); the tenant queues a prompt
    at instance 0 and at once opens another socket at instance 1, and asks its GET /prompt: both count the prompt.
    Then, at instance 1 itself, a prompt queued right after a status said the queue was empty is counted by the
    status its queueing sends."""
    workers, seeded, store = cluster
    here = ComfyClient(workers[1].url, seeded.keys[TENANT])
    watcher, before = first_status(here, "watcher")
    try:
        assert before == 0
        answer = tenant(cluster).queue(sleeping(3.0, "counted"))
        assert answer.status_code == 200, answer.text
        late, counted = first_status(here, "late")
        late.close()
        assert counted == 1
        assert here.get("/prompt").json()["exec_info"]["queue_remaining"] == 1
        pid = answer.json()["prompt_id"]
        # the watcher is told 1 until the prompt ends, then 0 (the last status its end causes here)
        while next_count(watcher) != 0:
            pass
        assert job(store, pid)["state"] == "done"
        answer = here.queue(sleeping(1.0, "local"))
        assert answer.status_code == 200, answer.text
        assert next_count(watcher) == 1
    finally:
        watcher.close()
