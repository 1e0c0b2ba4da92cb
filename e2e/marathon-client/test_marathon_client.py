"""The real `marathon` client library (PyPI 0.13.0) against a running Pacer.

The library builds its models from every key of a response and fails on keys it does not
know, so each call is also a check of the response's shape. Every wait has a deadline.
"""
import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
import requests
from marathon import MarathonApp, MarathonHttpError, NotFoundError
from marathon.models import MarathonDeployment, MarathonGroup, MarathonTask
from marathon.models.container import MarathonContainer, MarathonDockerContainer
from marathon.models.events import MarathonStatusUpdateEvent
from waiting import eventually

IMAGE = "pacer/busybox:latest"


def sleeper(app_id, instances=1, cpus=0.1):
    return MarathonApp(
        id=app_id,
        cmd="exec sleep 600",
        cpus=cpus,
        mem=16,
        instances=instances,
        container=MarathonContainer(type="DOCKER", docker=MarathonDockerContainer(image=IMAGE)),
    )


def settled(client, app_id):
    """No deployment holds the app any more."""
    return not any(app_id in d.affected_apps for d in client.list_deployments())


def running(client, app_id, n):
    app = client.get_app(app_id)
    return app if app.tasks_running == n and len(app.tasks) == n else None


@pytest.fixture
def app_id(client):
    app_id = f"/pytest/{uuid.uuid4().hex[:8]}"
    yield app_id
    try:
        client.delete_app(app_id, force=True)
    except NotFoundError:
        pass


def test_ping_info_leader(client):
    assert client.ping().strip() in (b"pong", "pong")
    info = client.get_info()
    assert info.name == "marathon"
    assert info.leader
    assert client.get_leader()["leader"] == info.leader


def test_callers_without_credentials_are_refused_as_marathon_refuses_them(client, credentials):
    url = f"{client.servers[0]}/v2/apps"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"message": "Invalid username or password."}
    assert requests.get(url, auth=(credentials[0], "wrong"), timeout=10).status_code == 401
    assert requests.get(url, auth=credentials, timeout=10).status_code == 200
    # /ping stays open, as load balancers probe it.
    assert requests.get(f"{client.servers[0]}/ping", timeout=10).status_code == 200


def test_app_lifecycle(client, app_id):
    created = client.create_app(app_id, sleeper(app_id))
    assert created.id == app_id
    assert created.mem == 16 and created.instances == 1
    assert created.deployments, "a create answers with its deployment"

    app = eventually("1 running task", lambda: running(client, app_id, 1))
    task = app.tasks[0]
    assert isinstance(task, MarathonTask)
    assert task.app_id == app_id and task.id.startswith(app_id.strip("/").replace("/", "_") + ".")
    assert task.state == "TASK_RUNNING" and task.host and task.started_at

    assert app_id in [a.id for a in client.list_apps()]
    assert [a.id for a in client.list_apps(app_id=app_id)] == [app_id]
    eventually("the create deployment to finish", lambda: settled(client, app_id))

    result = client.scale_app(app_id, instances=2)
    assert result["deploymentId"] and result["version"]
    eventually("2 running tasks", lambda: running(client, app_id, 2))
    tasks = client.list_tasks(app_id=app_id)
    assert len(tasks) == 2 and all(t.ports is not None for t in tasks)
    eventually("the scale deployment to finish", lambda: settled(client, app_id))

    update = sleeper(app_id, instances=2)
    update.env = {"COLOR": "blue"}
    client.update_app(app_id, update)
    eventually("the new version to run", lambda: client.get_app(app_id).env.get("COLOR") == "blue" and running(client, app_id, 2))
    versions = client.list_versions(app_id)
    assert len(versions) >= 3
    first = client.get_version(app_id, versions[-1])
    assert first.instances == 1 and not first.env

    victim = client.list_tasks(app_id=app_id)[0].id
    client.kill_task(app_id, victim)
    eventually("a replacement for the killed task",
               lambda: victim not in [t.id for t in client.list_tasks(app_id=app_id)] and running(client, app_id, 2))

    eventually("deployments to finish", lambda: settled(client, app_id))
    assert client.restart_app(app_id)["deploymentId"]
    eventually("the restart to finish", lambda: settled(client, app_id) and running(client, app_id, 2))

    client.delete_app(app_id)
    eventually("the app to go", lambda: app_id not in [a.id for a in client.list_apps()])
    with pytest.raises(NotFoundError):
        client.get_app(app_id)


def test_conflicts_and_invalid_apps(client, app_id):
    client.create_app(app_id, sleeper(app_id))
    with pytest.raises(MarathonHttpError) as duplicate:
        client.create_app(app_id, sleeper(app_id))
    assert duplicate.value.status_code == 409
    bad = sleeper(app_id + "x")
    bad.mem = -5
    with pytest.raises(MarathonHttpError) as invalid:
        client.create_app(app_id + "x", bad)
    assert invalid.value.status_code == 422


def test_deployments_queue_and_delay(client, app_id):
    client.create_app(app_id, sleeper(app_id, instances=1, cpus=100))
    deployments = eventually("the deployment to be listed",
                             lambda: [d for d in client.list_deployments() if app_id in d.affected_apps])
    assert isinstance(deployments[0], MarathonDeployment)
    assert deployments[0].current_actions[0].app == app_id
    queued = eventually("the app to wait in the queue", lambda: [q for q in client.list_queue() if q.app.id == app_id])
    assert queued[0].count == 1
    client.reset_delay(app_id)
    with pytest.raises(MarathonHttpError) as locked:
        client.scale_app(app_id, instances=2)
    assert locked.value.status_code == 409
    client.scale_app(app_id, instances=0, force=True)
    eventually("the queue to empty", lambda: not [q for q in client.list_queue() if q.app.id == app_id])


def test_groups(client):
    group_id = f"/grp{uuid.uuid4().hex[:6]}"
    group = MarathonGroup(id=group_id, apps=[sleeper("web"), sleeper("db")])
    client.create_group(group)
    try:
        fetched = client.get_group(group_id)
        assert sorted(a.id for a in fetched.apps) == [f"{group_id}/db", f"{group_id}/web"]
        assert group_id in [g.id for g in client.list_groups()]
        eventually("both apps to run", lambda: all(running(client, f"{group_id}/{n}", 1) for n in ("web", "db")))
    finally:
        client.delete_group(group_id, force=True)
    eventually("the group to go", lambda: group_id not in [g.id for g in client.list_groups()])


def test_event_stream_reports_task_updates(client, app_id):
    seen = []
    attached = threading.Event()

    def listen():
        for event in client.event_stream(event_types=["status_update_event"]):
            attached.set()
            if isinstance(event, MarathonStatusUpdateEvent) and event.app_id == app_id:
                seen.append(event)
                if event.task_status == "TASK_RUNNING":
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.5)  # the stream opens before the app exists; only then is "no event missed" meaningful
    client.create_app(app_id, sleeper(app_id))
    listener.join(timeout=60)
    assert not listener.is_alive(), "no TASK_RUNNING event within 60 s"
    assert seen[-1].task_status == "TASK_RUNNING"
    assert seen[-1].task_id.startswith(app_id.strip("/").replace("/", "_"))


def deployments_of(client, app_id):
    return [d for d in client.list_deployments() if app_id in d.affected_apps]


def test_force_delete_during_a_scale_ends_every_deployment(client, app_id):
    # 100 cpus fit nowhere: the start deployment, then a forced scale, stay running.
    client.create_app(app_id, sleeper(app_id, cpus=100))
    client.scale_app(app_id, instances=3, force=True)
    eventually("a running deployment", lambda: deployments_of(client, app_id))
    client.delete_app(app_id, force=True)
    eventually("no deployment of the deleted app", lambda: not deployments_of(client, app_id), limit=10)


def test_force_delete_of_an_app_whose_image_cannot_start(client, app_id):
    app = sleeper(app_id)
    app.container.docker.image = "pacer/no-such-image:never"
    client.create_app(app_id, app)
    eventually("the deployment to be listed", lambda: deployments_of(client, app_id))
    client.delete_app(app_id, force=True)
    eventually("no deployment of the deleted app", lambda: not deployments_of(client, app_id), limit=10)


def test_kill_with_scale_then_force_delete(client, app_id):
    client.create_app(app_id, sleeper(app_id, instances=2))
    app = eventually("2 running tasks", lambda: running(client, app_id, 2))
    eventually("the create deployment to finish", lambda: settled(client, app_id))
    client.kill_task(app_id, app.tasks[0].id, scale=True)
    assert client.get_app(app_id).instances == 1
    client.delete_app(app_id, force=True)
    eventually("no deployment of the deleted app", lambda: not deployments_of(client, app_id), limit=10)


def test_an_app_with_only_a_command_gets_port0_and_answers_on_it(client, app_id, credentials):
    client.create_app(app_id, MarathonApp(id=app_id, cmd="busybox httpd -f -p $PORT0", cpus=0.1, mem=16))
    app = client.get_app(app_id)
    [port] = app.port_definitions
    assert (port.protocol, port.name) == ("tcp", "default")
    assert 10000 <= port.port <= 20000, "a service port is assigned as for any 0"
    app = eventually("the httpd task to run", lambda: running(client, app_id, 1))
    task = app.tasks[0]
    assert len(task.ports) == 1

    def answers():
        try:
            urllib.request.urlopen(f"http://{task.host}:{task.ports[0]}/", timeout=2)
        except urllib.error.HTTPError:
            return True  # busybox httpd answered (an empty folder is a 404)
        except OSError:
            return False
        return True

    eventually("busybox httpd to answer on $PORT0", answers, limit=30)
    # The client leaves empty lists out of what it sends: an explicit [] goes by hand.
    empty = {"id": app_id + "none", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "portDefinitions": []}
    assert requests.post(f"{client.servers[0]}/v2/apps", json=empty, timeout=10,
                         auth=credentials).status_code == 201
    try:
        assert client.get_app(app_id + "none").port_definitions == []
    finally:
        client.delete_app(app_id + "none", force=True)


def test_task_stats_are_embedded_on_request(client, app_id):
    client.create_app(app_id, sleeper(app_id, instances=2))
    eventually("2 running tasks", lambda: running(client, app_id, 2))
    eventually("the create deployment to finish", lambda: settled(client, app_id))
    [listed] = [a for a in client.list_apps(embed_task_stats=True) if a.id == app_id]
    total = listed.task_stats.total_summary.stats
    assert (total.counts.running, total.counts.staged) == (2, 0)
    assert total.life_time.average_seconds >= 0 and total.life_time.median_seconds >= 0
    assert listed.task_stats.with_latest_config.stats.counts.running == 2
    assert listed.task_stats.with_outdated_config is None, "no task of an older version"
    app = client.get_app(app_id, embed_task_stats=True)
    assert app.task_stats.total_summary.stats.counts.running == 2
    assert client.get_app(app_id).task_stats is None, "only when asked for"


class Recorder(http.server.BaseHTTPRequestHandler):
    """A callback subscriber on loopback: keeps every event POSTed to it, in order."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.events.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_events():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.events = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/events"


def concerns(event, app_id):
    return app_id in (event.get("appId"), event.get("appDefinition", {}).get("id")) \
        or app_id in event.get("plan", {}).get("affectedApps", [])


def test_event_subscribers_get_every_event_in_order_and_a_dead_one_is_dropped(client, app_id):
    live, live_url = serve_events()
    # One that answers nothing (each POST times out) and one nobody listens on.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    hang_url = f"http://127.0.0.1:{hanging.getsockname()[1]}/events"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/events"
    closed.close()
    try:
        # The elected replica delivers, from its election on: on a cluster just started, a
        # subscription may come first, so the live one subscribes until it hears of itself.
        def heard_of_itself():
            client.delete_event_subscription(live_url)
            assert client.create_event_subscription(live_url)["eventType"] == "subscribe_event"
            time.sleep(0.5)
            return any(e["eventType"] == "subscribe_event" and e["callbackUrl"] == live_url for e in live.events)

        eventually("the live subscriber's own subscribe_event", heard_of_itself, limit=20)
        for url in (hang_url, dead_url):
            assert client.create_event_subscription(url)["eventType"] == "subscribe_event"
        assert set(client.list_event_subscriptions()) >= {live_url, hang_url, dead_url}

        client.create_app(app_id, sleeper(app_id))
        eventually("1 running task", lambda: running(client, app_id, 1))
        eventually("the create deployment to finish", lambda: settled(client, app_id))
        client.scale_app(app_id, instances=2)
        eventually("2 running tasks", lambda: running(client, app_id, 2))
        eventually("the scale to finish", lambda: settled(client, app_id))
        client.delete_app(app_id)
        eventually("the app's end to reach the subscriber", lambda: any(
            e["eventType"] == "app_terminated_event" and e["appId"] == app_id for e in live.events), limit=30)

        mine = [e for e in live.events if concerns(e, app_id)]
        kinds = [e["eventType"] for e in mine]
        # The lifecycle in order: created (the app and its deployment are one write, so
        # either may come first), running, deployed, scaled, ended.
        first = {k: kinds.index(k) for k in reversed(kinds)}
        running_at = next(i for i, e in enumerate(mine) if e.get("taskStatus") == "TASK_RUNNING")
        successes = [i for i, k in enumerate(kinds) if k == "deployment_success"]
        assert max(first["api_post_event"], first["deployment_info"]) < running_at < successes[0], kinds
        assert len(successes) >= 2 and successes[-1] < first["app_terminated_event"], kinds
        # Each task's states arrive in the order they happened.
        order = ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
        by_task = {}
        for e in mine:
            if e["eventType"] == "status_update_event":
                by_task.setdefault(e["taskId"], []).append(order.index(e["taskStatus"]))
        assert len(by_task) == 2 and all(states == sorted(states) for states in by_task.values()), by_task

        # The dead subscriber is dropped (the live one is told), the hanging one slowed nobody.
        eventually("the dead subscriber to be dropped", lambda: dead_url not in client.list_event_subscriptions())
        eventually("its unsubscribe_event", lambda: any(
            e["eventType"] == "unsubscribe_event" and e["callbackUrl"] == dead_url for e in live.events))
    finally:
        for url in (live_url, hang_url, dead_url):
            client.delete_event_subscription(url)
        live.shutdown()
        hanging.close()
    assert not {live_url, hang_url, dead_url} & set(client.list_event_subscriptions())


def test_only_allowed_callbacks_may_subscribe(client):
    with pytest.raises(MarathonHttpError) as refused:
        client.create_event_subscription("http://169.254.169.254/latest/meta-data")
    assert refused.value.status_code == 422
    assert "169.254.169.254" not in client.list_event_subscriptions()
