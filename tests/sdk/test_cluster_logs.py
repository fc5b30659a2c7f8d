"""Workspace.logs / follow_logs: the kubernetes client over real sockets against the stand-in API server of
tests/batch (pods listed by the builders' labels, logs read with tailLines and timestamps)."""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch"))  # the stand-in API server lives there
from fake_apiserver import FakeApiServer

from endpoints.sdk import EndpointError
from endpoints.sdk.workspace import follow_pod_logs, pod_logs, poll_pod_logs, selector

STAMP = "2026-11-23T12:00:{:02d}.{}Z "


@pytest.fixture
def core():
    with FakeApiServer() as server:
        config = client.Configuration()
        config.host = server.url
        api_client = client.ApiClient(config)
        yield server, client.CoreV1Api(api_client)
        api_client.close()


def _labels(deployment: str) -> dict[str, str]:
    return {"ml-endpoints.io/endpoint": "cars", "ml-endpoints.io/deployment": deployment}


def test_pod_logs_by_endpoint_and_deployment(core) -> None:
    server, api = core
    server.pods[("ml-dev", "cars-blue-1")] = {
        "labels": _labels("blue"),
        "log": STAMP.format(1, 5) + "b1\n" + STAMP.format(2, 5) + "b2\n",
    }
    server.pods[("ml-dev", "cars-green-1")] = {"labels": _labels("green"), "log": STAMP.format(1, 5) + "g1\n"}
    server.pods[("ml-dev", "shop-blue-1")] = {
        "labels": {**_labels("blue"), "ml-endpoints.io/endpoint": "shop"},
        "log": "x\n",
    }
    assert pod_logs(api, "ml-dev", selector("cars"), tail=1) == {"cars-blue-1": "b2\n", "cars-green-1": "g1\n"}
    assert pod_logs(api, "ml-dev", selector("cars", "green"), tail=None) == {"cars-green-1": "g1\n"}
    assert pod_logs(api, "other", selector("cars")) == {}


def test_follow_yields_each_line_once_across_polls(core) -> None:
    server, api = core
    pod = {"labels": _labels("blue"), "log": STAMP.format(1, 5) + "first\n"}
    server.pods[("ml-dev", "cars-blue-1")] = pod
    seen: list[tuple[str, str]] = []
    polls = iter(range(3))

    def stop() -> bool:
        # Between polls: lines whose fraction the API trimmed ("01.5Z" then "01.55Z": as text the second sorts first).
        index = next(polls, None)
        if index == 1:
            pod["log"] += STAMP.format(1, 55) + "second\n" + STAMP.format(2, 5) + "third\n"
        return index is None

    for item in follow_pod_logs(api, "ml-dev", selector("cars"), stop=stop, poll_s=0):
        seen.append(item)
    assert seen == [("cars-blue-1", "first"), ("cars-blue-1", "second"), ("cars-blue-1", "third")]


def test_follow_after_skips_lines_stamped_before_it_in_every_pod(core) -> None:
    server, api = core
    pod = {"labels": _labels("blue"), "log": STAMP.format(1, 5) + "old\n"}
    server.pods[("ml-dev", "cars-blue-1")] = pod
    seen: list[tuple[str, str]] = []
    polls = iter(range(3))

    def stop() -> bool:
        index = next(polls, None)
        if index == 1:  # after the first poll: a line in the pod, and a pod that was not there (one old line)
            pod["log"] += STAMP.format(3, 5) + "new\n"
            server.pods[("ml-dev", "cars-blue-2")] = {
                "labels": _labels("blue"),
                "log": STAMP.format(1, 9) + "old too\n" + STAMP.format(3, 6) + "late pod\n",
            }
        return index is None

    after = datetime.datetime(2026, 11, 23, 12, 0, 2, tzinfo=datetime.UTC).timestamp()
    for item in follow_pod_logs(api, "ml-dev", selector("cars"), stop=stop, poll_s=0, after=after):
        seen.append(item)
    assert seen == [("cars-blue-1", "new"), ("cars-blue-2", "late pod")]


def test_a_kubelet_the_api_server_cannot_reach_is_named_in_one_line(core) -> None:
    server, api = core
    dial = 'Get "https://kwok-cpu-1:10250/containerLogs/ml-dev/cars-blue-1/scorer": dial tcp: no such host'
    server.pods[("ml-dev", "cars-blue-1")] = {"labels": _labels("blue"), "log": "", "error": (500, dial)}
    with pytest.raises(EndpointError) as e:
        pod_logs(api, "ml-dev", selector("cars"))
    assert str(e.value) == f"pod ml-dev/cars-blue-1: cannot read its log: the API server answered 500: {dial}"


def test_a_seldom_look_reads_each_pod_back_from_its_last_line(core) -> None:
    """A caller that looks seldom (the studio's follow, after a while away): the pod is read back from its last
    stamp, not only the last few seconds, and each line comes once."""
    server, api = core
    pod = {"labels": _labels("blue"), "log": STAMP.format(1, 5) + "first\n"}
    server.pods[("ml-dev", "cars-blue-1")] = pod
    last: dict[str, str] = {}
    assert poll_pod_logs(api, "ml-dev", selector("cars"), last) == [("cars-blue-1", "first")]
    pod["log"] += STAMP.format(2, 5) + "second\n"
    looked_at = time.time()
    assert poll_pod_logs(api, "ml-dev", selector("cars"), last) == [("cars-blue-1", "second")]
    assert poll_pod_logs(api, "ml-dev", selector("cars"), last) == []
    [*_, query] = [r["query"] for r in server.requests if r["path"].endswith("/log")]
    first_stamp = datetime.datetime(2026, 11, 23, 12, 0, 2, 500000, tzinfo=datetime.UTC).timestamp()
    assert int(query["sinceSeconds"][0]) >= looked_at - first_stamp  # days back, to the pod's last line


def test_the_floor_holds_back_only_pods_not_seen_before(core) -> None:
    """``floor`` (the moment a tail was read) keeps a new pod's older lines out; a pod already seen is compared with
    its own last stamp (the node's clock) only."""
    server, api = core
    pod = {"labels": _labels("blue"), "log": STAMP.format(1, 5) + "seen\n"}
    server.pods[("ml-dev", "cars-blue-1")] = pod
    server.pods[("ml-dev", "cars-blue-2")] = {
        "labels": _labels("blue"),
        "log": STAMP.format(1, 6) + "before the floor\n" + STAMP.format(5, 0) + "after the floor\n",
    }
    pod["log"] += STAMP.format(3, 0) + "behind the floor on this machine's clock\n"
    last = {"cars-blue-1": "2026-11-23T12:00:01.500000000"}
    floor = "2026-11-23T12:00:04.000000000"
    assert poll_pod_logs(api, "ml-dev", selector("cars"), last, floor=floor) == [
        ("cars-blue-1", "behind the floor on this machine's clock"),
        ("cars-blue-2", "after the floor"),
    ]
