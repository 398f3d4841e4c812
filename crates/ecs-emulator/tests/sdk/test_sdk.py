"""Fidelity: the official Alibaba Cloud Python SDKs talk to ecs-emulator as to ECS.

Three clients, each through the same scenarios:
- alibabacloud_ecs20140526 with its default signature (V3, ACS3-HMAC-SHA256),
- alibabacloud_ecs20140526 with signature_algorithm='v2' (RPC signature V1, HMAC-SHA1),
- aliyun-python-sdk-core (AcsClient) with a CommonRequest (RPC signature V1).
"""

import json

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import models as open_api_models
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, DEFAULT_ACCOUNT_ID, REGION


class SdkError(Exception):
    def __init__(self, status, code):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


class TeaClient:
    """alibabacloud_ecs20140526; `algorithm` None = the SDK default (V3)."""

    def __init__(self, emulator, algorithm, secret=ACCESS_KEY_SECRET):
        config = open_api_models.Config(
            access_key_id=ACCESS_KEY_ID,
            access_key_secret=secret,
            endpoint=emulator.endpoint,
            protocol="http",
            region_id=REGION,
        )
        if algorithm:
            config.signature_algorithm = algorithm
        self.client = EcsClient(config)
        self.sts = StsClient(config)

    def _call(self, fn, request):
        try:
            return fn(request).body.to_map()
        except Exception as e:  # the SDK raises ClientException / ServerException
            if getattr(e, "code", None) is None or getattr(e, "status_code", None) is None:
                raise
            raise SdkError(e.status_code, e.code) from e

    def describe(self, ids):
        return self._call(
            self.client.describe_instances,
            ecs_models.DescribeInstancesRequest(region_id=REGION, instance_ids=json.dumps(ids)),
        )

    def start(self, instance_id):
        return self._call(self.client.start_instance, ecs_models.StartInstanceRequest(instance_id=instance_id))

    def stop(self, instance_id):
        return self._call(self.client.stop_instance, ecs_models.StopInstanceRequest(instance_id=instance_id))

    def start_many(self, ids):
        return self._call(
            self.client.start_instances,
            ecs_models.StartInstancesRequest(region_id=REGION, instance_id=ids),
        )

    def caller_identity(self):
        return self.sts.get_caller_identity().body.to_map()


class CoreClient:
    """aliyun-python-sdk-core with CommonRequest."""

    def __init__(self, emulator, secret=ACCESS_KEY_SECRET):
        self.endpoint = emulator.endpoint
        self.client = AcsClient(ACCESS_KEY_ID, secret, REGION)

    def _call(self, action, params, version="2014-05-26"):
        request = CommonRequest()
        request.set_domain(self.endpoint)
        request.set_protocol_type("http")
        request.set_method("POST")
        request.set_version(version)
        request.set_action_name(action)
        request.set_accept_format("json")
        for key, value in params.items():
            request.add_query_param(key, value)
        try:
            return json.loads(self.client.do_action_with_exception(request))
        except ServerException as e:
            raise SdkError(e.get_http_status(), e.get_error_code()) from e

    def describe(self, ids):
        return self._call("DescribeInstances", {"RegionId": REGION, "InstanceIds": json.dumps(ids)})

    def start(self, instance_id):
        return self._call("StartInstance", {"InstanceId": instance_id})

    def stop(self, instance_id):
        return self._call("StopInstance", {"InstanceId": instance_id})

    def start_many(self, ids):
        params = {"RegionId": REGION}
        for n, instance_id in enumerate(ids, start=1):
            params[f"InstanceId.{n}"] = instance_id
        return self._call("StartInstances", params)

    def caller_identity(self):
        return self._call("GetCallerIdentity", {}, version="2015-04-01")


SDKS = {
    "tea-v3": (lambda emu, **kw: TeaClient(emu, None, **kw), "V3"),
    "tea-v2": (lambda emu, **kw: TeaClient(emu, "v2", **kw), "V1"),
    "core-common-request": (lambda emu, **kw: CoreClient(emu, **kw), "V1"),
}


@pytest.fixture(params=sorted(SDKS))
def sdk(request, emulator):
    make, scheme = SDKS[request.param]
    return make, scheme, emulator


def statuses(body):
    return {i["InstanceId"]: i["Status"] for i in body["Instances"]["Instance"]}


def test_describe_instances_parses(sdk):
    make, scheme, emu = sdk
    body = make(emu).describe(["i-stopped1", "i-running1", "i-locked1"])
    assert statuses(body) == {"i-stopped1": "Stopped", "i-running1": "Running", "i-locked1": "Stopped"}
    locked = [i for i in body["Instances"]["Instance"] if i["InstanceId"] == "i-locked1"][0]
    assert locked["OperationLocks"]["LockReason"][0]["LockReason"] == "security"
    running = [i for i in body["Instances"]["Instance"] if i["InstanceId"] == "i-running1"][0]
    assert running["Tags"]["Tag"] == [{"TagKey": "team", "TagValue": "web"}]
    assert body["RequestId"]
    calls = emu.calls()
    assert [(c["action"], c["signature"], c["httpStatus"]) for c in calls] == [("DescribeInstances", scheme, 200)]


def test_start_and_stop_change_state(sdk):
    make, scheme, emu = sdk
    client = make(emu)
    assert client.start("i-stopped1")["RequestId"]
    assert statuses(client.describe(["i-stopped1"]))["i-stopped1"] in ("Starting", "Running")
    emu.wait_for_status("i-stopped1", "Running")
    assert statuses(client.describe(["i-stopped1"]))["i-stopped1"] == "Running"
    assert client.stop("i-stopped1")["RequestId"]
    emu.wait_for_status("i-stopped1", "Stopped")
    assert statuses(client.describe(["i-stopped1"]))["i-stopped1"] == "Stopped"
    writes = [c for c in emu.calls() if c["action"] in ("StartInstance", "StopInstance")]
    assert [(c["action"], c["instanceIds"], c["signature"]) for c in writes] == [
        ("StartInstance", ["i-stopped1"], scheme),
        ("StopInstance", ["i-stopped1"], scheme),
    ]


def test_start_instances_with_two_ids(sdk):
    make, _, emu = sdk
    body = make(emu).start_many(["i-stopped1", "i-stopped2"])
    responses = body["InstanceResponses"]["InstanceResponse"]
    assert [(r["InstanceId"], r["Code"], r["PreviousStatus"], r["CurrentStatus"]) for r in responses] == [
        ("i-stopped1", "200", "Stopped", "Starting"),
        ("i-stopped2", "200", "Stopped", "Starting"),
    ]
    emu.wait_for_status("i-stopped1", "Running")
    emu.wait_for_status("i-stopped2", "Running")


def test_wrong_secret_gets_signature_does_not_match(sdk):
    make, scheme, emu = sdk
    with pytest.raises(SdkError) as err:
        make(emu, secret="not-the-secret").describe(["i-stopped1"])
    assert (err.value.status, err.value.code) == (400, "SignatureDoesNotMatch")
    assert emu.calls()[-1]["signature"] == scheme


def test_unknown_instance_gets_404(sdk):
    make, _, emu = sdk
    with pytest.raises(SdkError) as err:
        make(emu).start("i-doesnotexist")
    assert (err.value.status, err.value.code) == (404, "InvalidInstanceId.NotFound")


def test_start_on_running_gets_incorrect_instance_status(sdk):
    make, _, emu = sdk
    with pytest.raises(SdkError) as err:
        make(emu).start("i-running1")
    assert (err.value.status, err.value.code) == (403, "IncorrectInstanceStatus")
    assert emu.status("i-running1") == "Running"


def test_security_lock_gets_instance_locked_for_security(sdk):
    make, _, emu = sdk
    with pytest.raises(SdkError) as err:
        make(emu).start("i-locked1")
    assert (err.value.status, err.value.code) == (403, "InstanceLockedForSecurity")


def test_get_caller_identity(sdk):
    make, scheme, emu = sdk
    body = make(emu).caller_identity()
    assert body["AccountId"] == DEFAULT_ACCOUNT_ID
    assert body["IdentityType"] == "Account"
    assert body["Arn"] == f"acs:ram::{DEFAULT_ACCOUNT_ID}:root"
    assert body["UserId"] == DEFAULT_ACCOUNT_ID
    assert body["PrincipalId"] == DEFAULT_ACCOUNT_ID
    assert body["RequestId"]
    calls = emu.calls()
    assert [(c["action"], c["signature"], c["httpStatus"], c["accountId"]) for c in calls] == [
        ("GetCallerIdentity", scheme, 200, DEFAULT_ACCOUNT_ID)
    ]
