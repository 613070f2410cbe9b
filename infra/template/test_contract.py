#!/usr/bin/env python3
"""The template contract: rules a deploy on a real account depends on, checked on the template
as CloudFormation will see it (render.py), so they cannot quietly come back.

    python -m unittest infra/template/test_contract.py           (make lint runs it)
    TEMPLATE=/path/to/other.yaml python -m unittest ...          (check another template)

Each rule names what breaks on a real account when it does not hold.
"""
import fnmatch
import json
import os
import pathlib
import re
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import render  # noqa: E402  (this directory is not a package)

ROOT = render.ROOT
TEMPLATE = pathlib.Path(os.environ.get("TEMPLATE", ROOT / "template.yaml"))
# A stack name no resource would carry by chance: every physical name must contain it.
STACK = "contractcheck"

# What an MSK event source mapping does with the function's role before it can poll: describe
# the cluster and its network, and create its network interfaces there.
MSK_MAPPING_ACTIONS = [
    "kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers",
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
    "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
]
# The AWS managed policies the template may attach, by what they allow (IAM's published
# documents; AWSLambdaVPCAccessExecutionRole lacks DescribeVpcs and DescribeSecurityGroups).
MANAGED_POLICIES = {
    "AWSLambdaMSKExecutionRole": MSK_MAPPING_ACTIONS + [
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "kafka:DescribeCluster"],
    "AWSLambdaVPCAccessExecutionRole": [
        "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    "AWSLambdaBasicExecutionRole": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
}
# Properties that set a physical name, by resource type.
NAME_PROPERTIES = {
    "AWS::SQS::Queue": "QueueName", "AWS::SNS::Topic": "TopicName", "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName", "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::CloudWatch::Alarm": "AlarmName", "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Scheduler::ScheduleGroup": "Name", "AWS::KMS::Alias": "AliasName",
    "AWS::EC2::SecurityGroup": "GroupName",
}
# The only HTTP operations without the authorizer.
OPEN_OPERATIONS = {("get", "/admin/health")}
# Resources that hold data a stack deletion or replacement must not take with it.
DATA_HOLDING = ["AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::KMS::Key"]
# Properties of an MSK event that only provisioned mode honours.
MSK_ERROR_HANDLING = ["BisectBatchOnFunctionError", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds",
                      "DestinationConfig"]


def setUpModule():
    global TPL, RES, CLUSTER_ARN, CLUSTER
    TPL = render.render(render.load(TEMPLATE), stack=STACK)
    RES = TPL["Resources"]
    CLUSTER_ARN = render.SAMPLE_PARAMETERS["MskClusterArn"]
    CLUSTER = CLUSTER_ARN.split(":cluster/", 1)[1]  # name/uuid


# ---------------------------------------------------------------- reading the rendered template
def of_type(kind):
    return {name: r for name, r in RES.items() if r["Type"] == kind}


def target(value):
    """The logical id a Ref or GetAtt points at, else None."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            return arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]
    return None


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements_of_role(role):
    """Every Allow statement that applies to a role: inline, attached from the template, and the
    AWS managed policies it names (by their known actions)."""
    props = RES[role]["Properties"]
    found = []
    for policy in props.get("Policies", []):
        found += policy["PolicyDocument"]["Statement"]
    for arn in props.get("ManagedPolicyArns", []):
        local = target(arn)
        if local:
            found += RES[local]["Properties"]["PolicyDocument"]["Statement"]
        else:
            text = json.dumps(arn)
            for name, actions in MANAGED_POLICIES.items():
                if re.search(rf"policy/(service-role/)?{name}\b", text):
                    found.append({"Effect": "Allow", "Action": actions, "Resource": "*"})
    for name, policy in of_type("AWS::IAM::ManagedPolicy").items():
        if role in [target(r) for r in policy["Properties"].get("Roles", [])]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return [s for s in found if s.get("Effect") == "Allow"]


def allows(statements, action, resource):
    """Whether some statement allows `action` on `resource` (a string ARN or a Ref/GetAtt)."""
    for statement in statements:
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"])):
            continue
        for granted in as_list(statement["Resource"]):
            if granted == "*" or granted == resource:
                return True
            if isinstance(granted, str) and isinstance(resource, str) and fnmatch.fnmatchcase(resource, granted):
                return True
    return False


def function_role(function):
    return target(RES[function]["Properties"]["Role"])


def msk_mappings():
    """(mapping logical id, its properties, function logical id) for every MSK mapping."""
    for name, esm in of_type("AWS::Lambda::EventSourceMapping").items():
        props = esm["Properties"]
        if ":kafka:" in json.dumps(props.get("EventSourceArn", "")):
            yield name, props, target(props["FunctionName"])


def env(function):
    return RES[function]["Properties"].get("Environment", {}).get("Variables", {})


def alarms():
    return of_type("AWS::CloudWatch::Alarm")


def alarm_metrics(alarm):
    """(namespace, metric name, {dimension: value}) of every metric an alarm reads."""
    props = alarm["Properties"]
    if "MetricName" in props:
        yield props.get("Namespace"), props["MetricName"], {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
    for query in props.get("Metrics", []):
        metric = query.get("MetricStat", {}).get("Metric")
        if metric:
            yield metric["Namespace"], metric["MetricName"], {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}


def alarms_on(metric, dimension, value):
    return [name for name, alarm in alarms().items()
            if any(m == metric and dims.get(dimension) == value for _, m, dims in alarm_metrics(alarm))]


def dashboard_bodies():
    return [json.loads(d["Properties"]["DashboardBody"]) if isinstance(d["Properties"]["DashboardBody"], str)
            else d["Properties"]["DashboardBody"] for d in of_type("AWS::CloudWatch::Dashboard").values()]


# ---------------------------------------------------------------- the rules
class KafkaConsumers(unittest.TestCase):
    def test_error_handling_controls_come_with_provisioned_mode(self):
        # Lambda refuses (or ignores) bisect, retries, record age and on-failure destinations on
        # an MSK mapping in on-demand mode.
        for name, props, _ in msk_mappings():
            if any(key in props for key in MSK_ERROR_HANDLING):
                self.assertIn("ProvisionedPollerConfig", props, f"{name}: error handling without provisioned mode")

    def test_every_mapping_reports_its_metrics_and_is_alarmed(self):
        # Without MetricsConfig a mapping that cannot poll, commit or park looks healthy.
        for name, props, _ in msk_mappings():
            metrics = props.get("MetricsConfig", {}).get("Metrics", [])
            self.assertTrue({"EventCount", "ErrorCount"} <= set(metrics), f"{name}: MetricsConfig {metrics}")
            uuid = {"Ref": name}
            for metric in ["PollingErrorCount", "OnFailureDestinationDeliveryErrorCount", "DroppedEventCount"]:
                self.assertTrue(alarms_on(metric, "EventSourceMappingUUID", uuid), f"{name}: no alarm on {metric}")

    def test_every_role_grants_what_its_mapping_needs(self):
        for name, props, function in msk_mappings():
            statements = statements_of_role(function_role(function))
            with self.subTest(mapping=name):
                for action in MSK_MAPPING_ACTIONS:
                    self.assertTrue(allows(statements, action, CLUSTER_ARN) or allows(statements, action, "*"),
                                    f"{function}: the mapping cannot start without {action}")
                for action in ["kafka-cluster:Connect", "kafka-cluster:DescribeClusterDynamicConfiguration"]:
                    self.assertTrue(allows(statements, action, CLUSTER_ARN), f"{function}: {action} on the cluster")
                group = props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
                group_arn = f"arn:aws:kafka:{render.REGION}:{render.ACCOUNT}:group/{CLUSTER}/{group}"
                for action in ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]:
                    self.assertTrue(allows(statements, action, group_arn), f"{function}: {action} on {group_arn}")
                for topic in props["Topics"]:
                    topic_arn = f"arn:aws:kafka:{render.REGION}:{render.ACCOUNT}:topic/{CLUSTER}/{topic}"
                    for action in ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]:
                        self.assertTrue(allows(statements, action, topic_arn), f"{function}: {action} on {topic_arn}")
                destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                if destination:
                    self.assertTrue(allows(statements, "sqs:SendMessage", destination),
                                    f"{function}: cannot park failed batches in {target(destination)}")

    def test_every_consumer_may_write_and_alarms_on_its_dead_letters(self):
        for name, props, function in msk_mappings():
            statements = statements_of_role(function_role(function))
            for topic in props["Topics"]:
                dead = env(function).get("DEAD_LETTER_TOPIC", f"{topic}-dlq")
                dead_arn = f"arn:aws:kafka:{render.REGION}:{render.ACCOUNT}:topic/{CLUSTER}/{dead}"
                for action in ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]:
                    self.assertTrue(allows(statements, action, dead_arn), f"{function}: {action} on {dead_arn}")
                self.assertIn(dead, [t["Name"] for t in render.load(TEMPLATE)["Metadata"]["KafkaTopics"]],
                              f"{dead} is not in Metadata.KafkaTopics")
            # A dead letter too large for its topic goes to the bucket first (a claim check).
            bucket = env(function).get("DEAD_LETTER_BUCKET")
            self.assertIn(target(bucket) if isinstance(bucket, dict) else None, of_type("AWS::S3::Bucket"),
                          f"{function}: DEAD_LETTER_BUCKET names no bucket of the stack")
            group = props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
            self.assertTrue(any("s3:PutObject" in as_list(s["Action"])
                                and target(bucket) in json.dumps(s["Resource"])
                                and f"/dead-letters/{group}/*" in json.dumps(s["Resource"])
                                for s in statements),
                            f"{function}: cannot write oversized dead letters under dead-letters/{group}/")
            rejected = alarms_on("Rejected", "FunctionName", {"Ref": function})
            exhausted = alarms_on("Exhausted", "FunctionName", {"Ref": function})
            self.assertTrue(set(rejected) & set(exhausted), f"{function}: no alarm on its dead letters")

    def test_every_write_data_has_its_describe_topic(self):
        # MSK refuses a produce to a topic the principal cannot describe.
        for role in of_type("AWS::IAM::Role"):
            statements = statements_of_role(role)
            for statement in statements:
                if any(fnmatch.fnmatchcase("kafka-cluster:writedata", a.lower()) for a in as_list(statement["Action"])):
                    for resource in as_list(statement["Resource"]):
                        self.assertTrue(allows(statements, "kafka-cluster:DescribeTopic", resource),
                                        f"{role}: WriteData on {resource} without DescribeTopic")


class Alarms(unittest.TestCase):
    def test_every_alarm_reaches_a_topic_that_admits_cloudwatch(self):
        topics = of_type("AWS::SNS::Topic")
        policies = of_type("AWS::SNS::TopicPolicy").values()
        keys = of_type("AWS::KMS::Key")
        for name, alarm in alarms().items():
            actions = alarm["Properties"].get("AlarmActions", [])
            self.assertTrue(actions, f"{name} notifies nobody")
            for action in actions:
                topic = target(action)
                self.assertIn(topic, topics, f"{name}: publishes to {action}, not a topic of this stack")
                admitted = [s for p in policies if topic in [target(t) for t in p["Properties"]["Topics"]]
                            for s in p["Properties"]["PolicyDocument"]["Statement"]
                            if s["Effect"] == "Allow" and "cloudwatch.amazonaws.com" in json.dumps(s.get("Principal"))
                            and allows([s], "sns:Publish", {"Ref": topic})]
                self.assertTrue(admitted, f"topic {topic}: its policy does not admit CloudWatch")
                key = topics[topic]["Properties"].get("KmsMasterKeyId")
                if key is None:
                    continue
                self.assertIn(target(key), keys, f"topic {topic}: encrypted with {key}, which CloudWatch cannot use")
                key_statements = [s for s in keys[target(key)]["Properties"]["KeyPolicy"]["Statement"]
                                  if "cloudwatch.amazonaws.com" in json.dumps(s.get("Principal"))]
                for action in ["kms:Decrypt", "kms:GenerateDataKey"]:
                    self.assertTrue(allows(key_statements, action, "*"), f"key of {topic}: CloudWatch lacks {action}")

    def test_every_alarm_chooses_what_missing_data_means(self):
        for name, alarm in alarms().items():
            self.assertIn("TreatMissingData", alarm["Properties"], f"{name}: TreatMissingData left to the default")

    def test_scheduled_jobs_alarm_on_failed_async_delivery(self):
        for schedule in of_type("AWS::Scheduler::Schedule").values():
            function = target(schedule["Properties"]["Target"]["Arn"])
            for metric in ["Errors", "AsyncEventsDropped", "DestinationDeliveryFailures"]:
                self.assertTrue(alarms_on(metric, "FunctionName", {"Ref": function}), f"{function}: no alarm on {metric}")

    def test_every_emf_metric_named_is_one_the_code_emits(self):
        named = set()
        for alarm in alarms().values():
            named |= {metric for namespace, metric, _ in alarm_metrics(alarm) if namespace == "AdWorkers"}
        for body in dashboard_bodies():
            text = json.dumps(body)
            named |= set(re.findall(r"\{AdWorkers[^}]*\} MetricName=\\+\"(\w+)", text))
            for widget in body["widgets"]:
                for row in widget.get("properties", {}).get("metrics", []):
                    if row and row[0] == "AdWorkers":
                        named.add(row[1])
        self.assertTrue(named, "no EMF metric is alarmed or shown")
        code = "\n".join(p.read_text() for d in ["shared", "functions"] for p in (ROOT / d).rglob("*.rs"))
        for metric in sorted(named):
            self.assertIn(f'"{metric}"', code, f"AdWorkers/{metric} is alarmed or shown but no code emits it")

    def test_a_dashboard_shows_every_kind_of_function(self):
        bodies = dashboard_bodies()
        self.assertTrue(bodies, "no dashboard")
        text = json.dumps(bodies)
        for metric in ["Invocations", "Errors", "Duration", "Throttles", "ConcurrentExecutions", "OffsetLag",
                       "Records", "Rejected", "Exhausted", "ApproximateNumberOfMessagesVisible",
                       "BudgetSyncAccuracy", "DurationMs", "4xx", "5xx", "ConnectCount"]:
            self.assertIn(metric, text, f"the dashboard does not show {metric}")


class Apis(unittest.TestCase):
    def test_every_http_operation_requires_the_authorizer(self):
        # An operation without security is open to the internet. The one exception is the admin
        # API's health check, which says nothing but "reachable" (docs/functions/admin-api.md).
        opened = set()
        for name, api in of_type("AWS::ApiGatewayV2::Api").items():
            body = api["Properties"].get("Body")
            if not body:
                continue
            schemes = body.get("components", {}).get("securitySchemes", {})
            for path, operations in body.get("paths", {}).items():
                for verb, operation in operations.items():
                    security = operation.get("security") or body.get("security")
                    if (verb, path) in OPEN_OPERATIONS and security in (None, [], [{}], [{"NONE": []}]):
                        opened.add((verb, path))
                        continue
                    self.assertTrue(security, f"{name}: {verb.upper()} {path} is open")
                    for requirement in security:
                        for scheme in requirement:
                            self.assertEqual(schemes.get(scheme, {}).get("x-amazon-apigateway-authorizer", {}).get("type"),
                                             "jwt", f"{name}: {verb.upper()} {path} is not behind the JWT authorizer")
        self.assertEqual(opened, OPEN_OPERATIONS)

    def test_the_admin_apis_document_opens_only_what_the_template_opens(self):
        # docs/openapi.json (generated from the code) and the template must agree on what is open:
        # every other operation of the document is reached through the authorized greedy route.
        document = json.loads((ROOT / "docs" / "openapi.json").read_text())
        open_in_document = set()
        for path, operations in document["paths"].items():
            self.assertTrue(path.startswith("/admin/"), f"{path} is not under the admin route")
            for verb, operation in operations.items():
                if operation.get("security") == []:
                    open_in_document.add((verb, path))
                else:
                    self.assertEqual(operation.get("security"), [{"jwt": []}], f"{verb.upper()} {path}")
        self.assertEqual(open_in_document, OPEN_OPERATIONS)
        events = render.load(TEMPLATE)["Resources"]["AdminApiFunction"]["Properties"]["Events"]
        routes = {(e["Properties"]["Method"].lower(), e["Properties"]["Path"]): e["Properties"].get("Auth", {})
                  for e in events.values() if e["Type"] == "HttpApi"}
        self.assertEqual(set(routes), {("any", "/admin/{proxy+}"), ("get", "/admin/health")})
        self.assertEqual(routes[("any", "/admin/{proxy+}")], {}, "the admin route must take the default authorizer")
        self.assertEqual(routes[("get", "/admin/health")], {"Authorizer": "NONE"})

    def test_websocket_apis_authorize_connect_and_route_nothing_else_open(self):
        # Only $connect can be authorized; any other route without it would take messages from
        # unauthenticated clients, so $disconnect is the only one allowed without.
        for name, route in of_type("AWS::ApiGatewayV2::Route").items():
            props = route["Properties"]
            if props["RouteKey"] == "$connect":
                self.assertEqual(props.get("AuthorizationType"), "CUSTOM", f"{name}: $connect not authorized")
                self.assertIn(target(props.get("AuthorizerId")), of_type("AWS::ApiGatewayV2::Authorizer"))
            else:
                self.assertEqual(props["RouteKey"], "$disconnect", f"{name}: a route other than $connect/$disconnect")

    def test_every_stage_throttles(self):
        # Unthrottled, one client can run the account's Lambda concurrency down.
        for name, stage in of_type("AWS::ApiGatewayV2::Stage").items():
            settings = stage["Properties"].get("DefaultRouteSettings", {})
            self.assertIn("ThrottlingRateLimit", settings, f"{name}: not throttled")
            self.assertIn("ThrottlingBurstLimit", settings, f"{name}: no burst limit")

    def test_every_function_api_gateway_invokes_alarms_on_errors(self):
        invoked = {target(p["Properties"]["FunctionName"]) for p in of_type("AWS::Lambda::Permission").values()
                   if p["Properties"].get("Principal") == "apigateway.amazonaws.com"}
        self.assertTrue(invoked, "no function behind API Gateway")
        for function in invoked:
            self.assertTrue(alarms_on("Errors", "FunctionName", {"Ref": function}), f"{function}: no alarm on Errors")


class Stack(unittest.TestCase):
    def test_no_fixed_physical_names(self):
        # Two stacks in one account (staging, production) must not collide.
        for name, resource in RES.items():
            prop = NAME_PROPERTIES.get(resource["Type"])
            value = resource.get("Properties", {}).get(prop) if prop else None
            if value is not None:
                self.assertIn(STACK, json.dumps(value), f"{name}: {prop} {value} does not carry the stack name")
        for name, schedule in of_type("AWS::Scheduler::Schedule").items():
            group = target(schedule["Properties"].get("GroupName"))
            self.assertIn(group, of_type("AWS::Scheduler::ScheduleGroup"), f"{name}: in the account's default group")

    def test_data_outlives_the_stack(self):
        for name, resource in RES.items():
            if resource["Type"] in DATA_HOLDING:
                self.assertEqual(resource.get("DeletionPolicy"), "Retain", f"{name}: DeletionPolicy")
                self.assertEqual(resource.get("UpdateReplacePolicy"), "Retain", f"{name}: UpdateReplacePolicy")

    def test_every_function_runs_in_the_vpc_with_its_own_encrypted_log_group(self):
        for name, function in of_type("AWS::Lambda::Function").items():
            props = function["Properties"]
            self.assertIn("VpcConfig", props, f"{name}: outside the VPC it cannot reach the database")
            self.assertIn("KmsKeyArn", props, f"{name}: environment not encrypted with the stack key")
            group = target(props.get("LoggingConfig", {}).get("LogGroup"))
            self.assertIn(group, of_type("AWS::Logs::LogGroup"), f"{name}: no log group of its own")
            self.assertIn("KmsKeyId", RES[group]["Properties"], f"{group}: not encrypted")

    def test_every_encrypted_log_group_is_admitted_by_its_keys_policy(self):
        # CloudWatch Logs must be allowed to use the key for that log group's ARN, or the group
        # fails to create on a real account.
        for name, group in of_type("AWS::Logs::LogGroup").items():
            key = target(group["Properties"].get("KmsKeyId"))
            if not key:
                continue
            arn = f"arn:aws:logs:{render.REGION}:{render.ACCOUNT}:log-group:{group['Properties']['LogGroupName']}"
            admitted = []
            for statement in RES[key]["Properties"]["KeyPolicy"]["Statement"]:
                if "logs." in json.dumps(statement.get("Principal", {})):
                    condition = statement.get("Condition", {}).get("ArnLike", {})
                    admitted += as_list(condition.get("kms:EncryptionContext:aws:logs:arn", []))
            self.assertTrue(any(isinstance(p, str) and fnmatch.fnmatchcase(arn, p) for p in admitted),
                            f"{name}: {arn} may not use {key}")

    def test_every_crate_has_a_function_and_every_function_a_crate(self):
        crates = {p.parent.name for p in (ROOT / "functions").glob("*/Cargo.toml")}
        declared = {r["Metadata"]["BuildProperties"]["Binary"] for r in of_type("AWS::Lambda::Function").values()
                    if "BuildProperties" in r.get("Metadata", {})}
        self.assertEqual(crates, declared, "functions/ and template.yaml disagree")


if __name__ == "__main__":
    unittest.main()
