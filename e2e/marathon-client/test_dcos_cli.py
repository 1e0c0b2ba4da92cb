"""The unchanged DC/OS CLI 0.6.1 (`dcos marathon ...`, PyPI dcoscli) against a running Pacer.

Modelled on the CLI's own integration tests (dcos/dcos-cli, cli/tests/integrations/
test_marathon*.py, Apache-2.0): the same commands, app and group definitions and checks of what
it prints, where the text comes from Marathon's exact answers. Every wait has a deadline.
"""
import json
import os
import re
import subprocess
import tempfile
import time
import uuid

import pytest
from waiting import eventually

# App and group definitions of the CLI's tests/data/marathon (Apache-2.0).
ZERO_INSTANCE = {"id": "zero-instance-app", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0,
                 "dependencies": ["/product/database", "../backend"],
                 "labels": {"PACKAGE_ID": "zero-instance-app", "PACKAGE_VERSION": "1.2.3"}}
UPDATE_ZERO = {"cpus": 1, "mem": 20, "cmd": "sleep 100"}
APP_ADD_400 = {"id": "/test", "cmd": "ls", "cpus": 1.0, "mem": 128.0,
               "container": {"type": "DOCKER", "docker": {"image": "busybox", "network": "bogus"}}}
STUCK_SLEEP = {"id": "stuck-sleep", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 10,
               "constraints": [["hostname", "UNIQUE"]]}
GOOD_GROUP = {"groups": [{"apps": [{"id": "goodnight", "cmd": "sleep 1", "instances": 0}], "id": "sleep"}],
              "id": "/test-group"}
SCALE_GROUP = {"groups": [{"apps": [{"id": "sleep", "cmd": "sleep 1000", "instances": 1, "cpus": 0.1,
                                     "mem": 16}], "id": "sleep"}], "id": "/scale-group"}
UPDATE_GROUP = {"apps": [{"cmd": "sleep 0", "id": "updated", "instances": 0}]}
COMPLICATED_BAD = {"apps": [{"cmd": "sleep 1", "id": "appingroups"}],
                   "groups": [{"apps": [{}], "id": "appingroups"},
                              {"groups": [{"apps": [{"cmd": "sleep 1", "id": "sleep1"}]}], "id": "moregroups"}],
                   "id": "/test-group"}
COMPLICATED = {"apps": [{"cmd": "sleep 1", "id": "appingroups", "instances": 0}],
               "groups": [{"apps": [{"cmd": "sleep 10", "id": "sleep10", "instances": 0,
                                     "dependencies": ["/product/database"]}], "id": "app"},
                          {"groups": [{"apps": [{"cmd": "sleep 1", "id": "sleep1", "instances": 0}],
                                       "id": "moregroups"}], "id": "moregroups"}],
               "id": "/test-group"}


class Dcos:
    """`dcos` under a HOME of its own, configured with `marathon.url`, the cluster's URL, CA and
    a token (as after `dcos cluster setup` and `dcos auth login`)."""

    def __init__(self, url):
        self.home = tempfile.mkdtemp(prefix="dcos-home-")
        self.files = tempfile.mkdtemp(prefix="dcos-data-")
        rc, _, err = self("config", "set", "marathon.url", url)
        assert rc == 0, err
        # What `dcos cluster setup` and a login leave: the CLI sends `Authorization:
        # token=<token>` and checks the certificate against core.ssl_verify, both only for
        # requests to core.dcos_url (the cluster): Pacer is the cluster.
        for key, value in [("core.dcos_url", url), ("core.dcos_acs_token", os.environ["PACER_TOKEN"]),
                           ("core.ssl_verify", os.environ["PACER_CACERT"])]:
            rc, _, err = self("config", "set", key, value)
            assert rc == 0, err

    def __call__(self, *args, stdin=None):
        env = {"HOME": self.home, "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        done = subprocess.run([os.environ["DCOS_BIN"], *args], input=stdin, capture_output=True,
                              env=env, timeout=120)
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def ok(self, *args, stdin=None):
        rc, out, err = self(*args, stdin=stdin)
        assert rc == 0 and err == "", f"dcos {' '.join(args)}: rc {rc}\n{out}\n{err}"
        return out

    def json(self, *args):
        return json.loads(self.ok(*args))

    def file(self, definition):
        path = os.path.join(self.files, f"{uuid.uuid4().hex}.json")
        with open(path, "w") as f:
            json.dump(definition, f)
        return path


@pytest.fixture
def dcos():
    return Dcos(os.environ["MARATHON_URL"])


def no_deployments(dcos):
    eventually("every deployment to end", lambda: dcos.json("marathon", "deployment", "list", "--json") == [])


def tasks_of(dcos, app_id):
    return dcos.json("marathon", "task", "list", "--json", app_id)


@pytest.fixture
def zero_app(dcos):
    out = dcos.ok("marathon", "app", "add", dcos.file(ZERO_INSTANCE))
    assert re.fullmatch(r"Created deployment \S+\n", out), out
    no_deployments(dcos)
    yield "zero-instance-app"
    dcos("marathon", "app", "remove", "--force", "zero-instance-app")


def test_about(dcos):
    assert dcos.json("marathon", "about")["name"] == "marathon"


def test_app_add_show_update_versions(dcos, zero_app):
    rc, _, err = dcos("marathon", "app", "add", dcos.file({"id": "zero-instance-app", "cmd": "x"}))
    assert (rc, err) == (1, "Application '/zero-instance-app' already exists\n")
    assert [a["id"] for a in dcos.json("marathon", "app", "list", "--json")] == ["/zero-instance-app"]
    table = dcos.ok("marathon", "app", "list").splitlines()
    assert table[0].split() == ["ID", "MEM", "CPUS", "TASKS", "HEALTH", "DEPLOYMENT", "WAITING", "CONTAINER", "CMD"]
    assert table[1].split()[:4] == ["/zero-instance-app", "16", "0.1", "0/0"]
    shown = dcos.json("marathon", "app", "show", zero_app)
    assert shown["id"] == "/zero-instance-app"
    assert shown["dependencies"] == ["/product/database", "/backend"]

    out = dcos.ok("marathon", "app", "update", zero_app, "cpus=1", "mem=20", "cmd='sleep 100'")
    assert out.startswith("Created deployment ")
    no_deployments(dcos)
    out = dcos.ok("marathon", "app", "update", zero_app, stdin=json.dumps(UPDATE_ZERO).encode())
    assert out.startswith("Created deployment ")
    no_deployments(dcos)
    assert dcos.json("marathon", "app", "show", zero_app)["mem"] == 20
    versions = dcos.json("marathon", "app", "version", "list", zero_app)
    assert len(versions) >= 2
    assert len(dcos.json("marathon", "app", "version", "list", "--max-count=1", zero_app)) == 1
    previous = dcos.json("marathon", "app", "show", "--app-version=-1", zero_app)
    assert previous["id"] == "/zero-instance-app" and previous["version"] == versions[1]
    rc, out, err = dcos("marathon", "app", "show", "--app-version=-100", zero_app)
    assert rc == 1 and re.fullmatch(r"Application 'zero-instance-app' only has [1-9][0-9]* version\(s\)\.\n", err)


def test_bad_input_gets_marathons_answers(dcos, zero_app):
    rc, out, err = dcos("marathon", "app", "update", zero_app, 'cpus="a string"')
    assert (rc, out) == (1, "")
    assert '{"message":"Invalid JSON","details":[{"path":"/cpus","errors":["error.expected.jsnumber"]}]}' in err
    rc, out, err = dcos("marathon", "app", "add", dcos.file(APP_ADD_400))
    assert (rc, out) == (1, "")
    assert ('{"message":"Invalid JSON","details":[{"path":"/container/docker/network",'
            '"errors":["error.unknown.enum.literal"]}]}') in err
    rc, out, err = dcos("marathon", "app", "show", "--app-version=20:39:32.972Z", zero_app)
    assert rc == 1 and err.startswith("Error while fetching")
    assert err.endswith('{"message":"Invalid timestamp provided \'20:39:32.972Z\'. Expecting ISO-8601 datetime string."}".\n'), err
    rc, out, err = dcos("marathon", "app", "show", "--app-version=2000-02-11T20:39:32.972Z", zero_app)
    assert rc == 1 and err.startswith("Error: App '/zero-instance-app' does not exist"), err
    rc, out, err = dcos("marathon", "app", "update", "{", "instances")
    assert (rc, out) == (1, "") and err.startswith("Error on request") and err.endswith("HTTP 400: Bad Request\n"), err
    rc, out, err = dcos("marathon", "app", "update", "missing-id", "instances=2")
    assert (rc, err) == (1, "Error: App '/missing-id' does not exist\n")
    rc, out, err = dcos("marathon", "app", "kill", "app")
    assert (rc, out, err) == (1, "", "Error: App '/app' does not exist\n")


def test_start_restart_kill_stop(dcos, zero_app):
    assert dcos.ok("marathon", "app", "start", zero_app, "2").startswith("Created deployment ")
    assert dcos.json("marathon", "app", "show", zero_app)["instances"] == 2
    no_deployments(dcos)
    before = {t["id"] for t in tasks_of(dcos, zero_app)}
    assert len(before) == 2, "a deployment that ended left exactly its instances"
    assert dcos.ok("marathon", "app", "restart", zero_app).startswith("Created deployment ")
    no_deployments(dcos)
    after = {t["id"] for t in tasks_of(dcos, zero_app)}
    assert len(after) == 2 and not before & after
    out = dcos.ok("marathon", "app", "kill", zero_app)
    assert out.startswith("Killed tasks: [")
    no_deployments(dcos)
    killed = {t["id"] for t in tasks_of(dcos, zero_app)}
    eventually("replacements with new ids", lambda: len(tasks_of(dcos, zero_app)) == 2
               and not {t["id"] for t in tasks_of(dcos, zero_app)} & after)
    out = dcos.ok("marathon", "app", "kill", "--scale", zero_app)
    assert out.startswith("Started deployment: ") and "version" in out and "deploymentId" in out, out
    no_deployments(dcos)
    assert dcos.json("marathon", "app", "show", zero_app)["instances"] == 0
    assert killed  # the kill left tasks to kill
    assert tasks_of(dcos, zero_app) == []
    rc, out, _ = dcos("marathon", "app", "stop", zero_app)
    assert (rc, out) == (1, "Application 'zero-instance-app' already stopped: 0 instances.\n")


def test_kill_and_scale_one_task_is_not_replaced(dcos, zero_app):
    dcos.ok("marathon", "app", "start", zero_app, "2")
    no_deployments(dcos)
    [first, second] = tasks_of(dcos, zero_app)
    result = json.loads(dcos.ok("marathon", "task", "kill", "--scale", "--json", first["id"]))
    assert "deploymentId" in result, result
    assert dcos.json("marathon", "app", "show", zero_app)["instances"] == 1, "scaled with the kill"
    # Every listing from now on holds no task but the two: the killed one is never replaced.
    deadline = time.time() + 20
    while True:
        ids = [t["id"] for t in tasks_of(dcos, zero_app)]
        assert set(ids) <= {first["id"], second["id"]}, f"a replacement was started: {ids}"
        if ids == [second["id"]] and not dcos.json("marathon", "deployment", "list", "--json"):
            break
        assert time.time() < deadline, f"the killed task is still listed: {ids}"
        time.sleep(0.2)


def test_task_show_stop_and_unknown(dcos, zero_app):
    dcos.ok("marathon", "app", "start", zero_app, "1")
    no_deployments(dcos)
    [task] = tasks_of(dcos, zero_app)
    assert dcos.json("marathon", "task", "show", task["id"])["appId"] == "/zero-instance-app"
    table = dcos.ok("marathon", "task", "list", zero_app).splitlines()
    assert table[0].split() == ["APP", "HEALTHY", "STARTED", "HOST", "ID"] and len(table) == 2
    assert dcos.json("marathon", "task", "stop", "--wipe", task["id"])["id"] == task["id"]
    rc, _, err = dcos("marathon", "task", "show", "missing-id")
    assert (rc, err) == (1, "Task 'missing-id' does not exist\n")
    rc, _, err = dcos("marathon", "task", "stop", "unknown-task-id")
    assert (rc, err) == (1, "Task 'unknown-task-id' does not exist\n")
    eventually("a replacement", lambda: [t for t in tasks_of(dcos, zero_app) if t["id"] != task["id"]])


def test_deployment_list_watch_stop_rollback(dcos, zero_app):
    # 100 instances of 0.1 cpus fit nowhere here: the deployment stays until stopped.
    dcos.ok("marathon", "app", "start", zero_app, "100")
    [d] = dcos.json("marathon", "deployment", "list", "--json")
    assert dcos.json("marathon", "deployment", "list", "--json", zero_app) == [d]
    assert dcos.json("marathon", "deployment", "list", "--json", "missing-id") == []
    table = dcos.ok("marathon", "deployment", "list").splitlines()
    assert table[0].split() == ["APP", "POD", "ACTION", "PROGRESS", "ID"] and len(table) == 2
    assert table[1].split()[:3] == ["/zero-instance-app", "-", "scale"]
    watched = dcos.ok("marathon", "deployment", "watch", "--max-count=1", "--interval=0", d["id"])
    assert watched.startswith("Deployment update time: ") and d["id"] in watched
    assert dcos.ok("marathon", "deployment", "stop", d["id"]) == ""
    assert dcos.json("marathon", "deployment", "list", "--json") == [], "a stopped deployment is gone at once"
    # A rollback returns to the app as it was before the deployment.
    dcos.ok("marathon", "app", "update", "--force", zero_app, "instances=0")
    no_deployments(dcos)
    dcos.ok("marathon", "app", "start", zero_app, "100")
    [d] = dcos.json("marathon", "deployment", "list", "--json")
    rolled = dcos.json("marathon", "deployment", "rollback", d["id"])
    assert "deploymentId" in rolled and "version" in rolled
    no_deployments(dcos)
    assert dcos.json("marathon", "app", "show", zero_app)["instances"] == 0
    rc, _, err = dcos("marathon", "deployment", "rollback", "missing-deployment")
    assert (rc, err) == (1, "Error: DeploymentPlan missing-deployment does not exist\n")


@pytest.fixture
def group_cleanup(dcos):
    yield
    for group in ("test-group", "scale-group"):
        dcos("marathon", "group", "remove", "--force", group)


def test_groups(dcos, group_cleanup):
    out = dcos.ok("marathon", "group", "add", stdin=json.dumps(GOOD_GROUP).encode())
    assert re.fullmatch(r"Created deployment \S+\n", out), out
    rc, _, err = dcos("marathon", "group", "add", dcos.file(GOOD_GROUP))
    assert (rc, err) == (1, "Group '/test-group' already exists\n")
    no_deployments(dcos)
    table = dcos.ok("marathon", "group", "list").splitlines()
    assert [line.split() for line in table] == [["ID", "APPS"], ["/test-group", "1"], ["/test-group/sleep", "1"]]
    shown = dcos.json("marathon", "group", "show", "test-group")
    assert shown["id"] == "/test-group" and shown["groups"][0]["apps"][0]["id"] == "/test-group/sleep/goodnight"
    out = dcos.ok("marathon", "group", "update", "test-group", stdin=json.dumps(UPDATE_GROUP).encode())
    assert out.startswith("Created deployment ")
    assert dcos.json("marathon", "app", "show", "test-group/updated")["id"] == "/test-group/updated"
    no_deployments(dcos)
    rc, _, err = dcos("marathon", "group", "update", "missing-id", "instances=1")
    assert (rc, err) == (1, "Error: Group '/missing-id' does not exist\n")
    assert dcos.ok("marathon", "group", "remove", "test-group") == ""
    no_deployments(dcos)
    rc, _, err = dcos("marathon", "group", "show", "test-group")
    assert (rc, err) == (1, "Error: Group '/test-group' does not exist\n")


def test_group_scale(dcos, group_cleanup):
    dcos.ok("marathon", "group", "add", dcos.file(SCALE_GROUP))
    no_deployments(dcos)
    assert dcos.ok("marathon", "group", "scale", "scale-group", "2").startswith("Created deployment ")
    no_deployments(dcos)
    assert dcos.json("marathon", "group", "show", "scale-group")["groups"][0]["apps"][0]["instances"] == 2
    eventually("2 tasks", lambda: len(tasks_of(dcos, "scale-group/sleep/sleep")) == 2)
    rc, out, _ = dcos("marathon", "group", "scale", "scale-group", "-2")
    assert rc == 1 and out.startswith("Invalid subcommand usage")
    rc, _, err = dcos("marathon", "group", "scale", "scale-group", "1.a")
    assert (rc, err) == (1, "Error parsing string as float\n")
    assert dcos.ok("marathon", "group", "remove", "scale-group") == ""
    no_deployments(dcos)


def test_bad_and_complicated_groups(dcos, group_cleanup):
    rc, out, err = dcos("marathon", "group", "add", dcos.file(COMPLICATED_BAD))
    assert (rc, out) == (1, "")
    assert ('{"message":"Invalid JSON","details":[{"path":"/groups(0)/apps(0)/id",'
            '"errors":["\'id\' is undefined on object: {}"]}]}') in err, err
    dcos.ok("marathon", "group", "add", dcos.file(COMPLICATED))
    no_deployments(dcos)
    shown = dcos.json("marathon", "group", "show", "test-group")
    nested = [g["id"] for g in shown["groups"]]
    assert sorted(nested) == ["/test-group/app", "/test-group/moregroups"]
    assert dcos.json("marathon", "app", "show", "test-group/app/sleep10")["dependencies"] == ["/product/database"]


def test_debug_list_summary_details(dcos):
    dcos.ok("marathon", "app", "add", dcos.file(STUCK_SLEEP))
    try:
        eventually("the stuck app to be overdue in the queue",
                   lambda: (dcos.json("marathon", "debug", "list", "--json") or [{}])[0].get("delay", {}).get("overdue"))
        table = dcos.ok("marathon", "debug", "list")
        pattern = r"/stuck-sleep\W+[^Z]+Z\W+\d\W+(?:True|False)\W+\d{1,2}\W+\d{1,2}\W+[^Z]+Z\W+[^Z]+Z"
        assert re.search(pattern, table), table
        summary = dcos.ok("marathon", "debug", "summary", "/stuck-sleep")
        assert "CONSTRAINTS" in summary and "[['hostname', 'UNIQUE']]" in summary and "0.00%" in summary, summary
        as_json = dcos.ok("marathon", "debug", "summary", "/stuck-sleep", "--json").replace(" ", "").replace("\n", "")
        assert '"reason":"UnfulfilledConstraint"' in as_json
        assert '{"declined":0,"processed":0,"reason":"InsufficientCpus"}' in as_json
        details = dcos.ok("marathon", "debug", "details", "/stuck-sleep")
        assert "ok-okokokok" in details.replace(" ", ""), details
    finally:
        dcos.ok("marathon", "app", "remove", "--force", "stuck-sleep")


def test_kill_by_host_and_task_kill_wipe(dcos, zero_app):
    dcos.ok("marathon", "app", "start", zero_app, "2")
    no_deployments(dcos)
    # No task runs on another host: nothing is killed, and the CLI says it failed.
    rc, out, _ = dcos("marathon", "app", "kill", "--host=10.255.0.1", zero_app)
    assert rc == 1, out
    assert len(tasks_of(dcos, zero_app)) == 2
    out = dcos.ok("marathon", "app", "kill", "--host=127.0.0.1", zero_app)
    assert out.startswith("Killed tasks: [") and out.count("'id'") == 2, out
    eventually("2 replacements", lambda: len(tasks_of(dcos, zero_app)) == 2)
    no_deployments(dcos)
    ids = sorted(t["id"] for t in tasks_of(dcos, zero_app))
    killed = json.loads(dcos.ok("marathon", "task", "kill", "--wipe", "--json", *ids))
    assert sorted(t["id"] for t in killed["tasks"]) == ids
    rc, out, err = dcos("marathon", "task", "kill", "unknown-task-id")
    assert (rc, err) == (1, "Failed to kill tasks. task-ids seems to be unknown\n"), (out, err)
