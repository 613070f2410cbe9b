#!/usr/bin/env python3
"""Creates in the local AWS endpoint (moto) every queue, bucket and topic template.yaml declares,
plus a Secrets Manager secret holding the local database credentials, and writes one env file per
function (.stack/<function>.env) with the function's template variables resolved locally.

The template is the one list: nothing here names a queue. `--check` verifies instead of creating
(exit 1 on any difference), which `make test` runs.
"""
import argparse
import json
import os
import pathlib
import re
import sys

import boto3

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "template"))
import render  # noqa: E402  (SAM CLI's AWS::LanguageExtensions, as CloudFormation applies it)

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATE = ROOT / ".stack"
STACK = os.environ.get("STACK_NAME", "adworkers")
ACCOUNT = "123456789012"  # moto's fixed account id
REGION = os.environ.get("AWS_REGION", "ap-northeast-2")
DB_SECRET_NAME = f"{STACK}/local/database"


class Unresolved(Exception):
    pass


class Context:
    def __init__(self, template, parameters):
        self.template = template
        self.refs = {
            "AWS::StackName": STACK,
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        for name, spec in template.get("Parameters", {}).items():
            if name in parameters:
                self.refs[name] = parameters[name]
            elif "Default" in spec:
                self.refs[name] = spec["Default"]
        self.atts = {}

    def resolve(self, value):
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                if arg not in self.refs:
                    raise Unresolved(arg)
                return self.refs[arg]
            if key == "Fn::GetAtt":
                att = tuple(arg)
                if att not in self.atts:
                    raise Unresolved(".".join(att))
                return self.atts[att]
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                extra = {k: self.resolve(v) for k, v in extra.items()}

                def sub(match):
                    name = match.group(1)
                    if name in extra:
                        return str(extra[name])
                    if "." in name:
                        return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
                    return str(self.resolve({"Ref": name}))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key == "Fn::Join":
                return arg[0].join(str(self.resolve(v)) for v in arg[1])
            if key.startswith("Fn::"):
                raise Unresolved(key)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


def resources(template, kind):
    return [(name, r.get("Properties", {})) for name, r in template["Resources"].items() if r["Type"] == kind]


def queue_attributes(ctx, props):
    attrs = {}
    for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"):
        if key in props:
            attrs[key] = str(ctx.resolve(props[key]))
    if "RedrivePolicy" in props:
        policy = ctx.resolve(props["RedrivePolicy"])
        attrs["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": policy["deadLetterTargetArn"], "maxReceiveCount": str(policy["maxReceiveCount"])}
        )
    return attrs


def local_parameters(secret_arn):
    return {
        "DatabaseSecretArn": secret_arn,
        # The local broker stands in for MSK.
        "MskClusterArn": f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/local/00000000-0000-0000-0000-000000000000-1",
        "MskBootstrapBrokers": os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"),
        "RedisUrl": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        # The local issuer (.stack/jwt, written by make up), its JWKS read from the file.
        "JwtIssuer": "https://auth.adworkers.local/",
        "JwtAudience": "adworkers-ops",
        "JwtJwksUrl": (STATE / "jwt" / "jwks.json").as_uri(),
        # The demo's catalog feeds (infra/local/catalog, served by e2e.sh).
        "CatalogFeeds": "NAVER=http://127.0.0.1:8090/naver.json,KAKAO=http://127.0.0.1:8090/kakao.json",
    }


def provision(raw, aws, check):
    problems = []
    secret_arn = ensure_db_secret(aws["secretsmanager"], check, problems)
    parameters = local_parameters(secret_arn)
    # The template with its Fn::ForEach patterns expanded, parameters resolved for this stack.
    template = render.expand(raw, parameters, stack=STACK)
    ctx = Context(template, parameters)
    sqs, s3, sns = aws["sqs"], aws["s3"], aws["sns"]

    # Queues in dependency order: a queue whose redrive target is not known yet waits a round.
    pending = dict(resources(template, "AWS::SQS::Queue"))
    while pending:
        progressed = False
        for logical, props in list(pending.items()):
            try:
                name = ctx.resolve(props["QueueName"])
                attrs = queue_attributes(ctx, props)
            except Unresolved:
                continue
            if check:
                try:
                    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                    have = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                    for key, want in attrs.items():
                        got = have.get(key)
                        if key == "RedrivePolicy":
                            got, want = json.loads(got or "{}"), json.loads(want)
                            got["maxReceiveCount"] = str(got.get("maxReceiveCount"))
                        if got != want:
                            problems.append(f"queue {name}: {key} is {got!r}, template says {want!r}")
                except sqs.exceptions.QueueDoesNotExist:
                    problems.append(f"queue {name} is missing")
                    url = f"missing:{name}"
            else:
                url = sqs.create_queue(QueueName=name)["QueueUrl"]
                if attrs:
                    sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)
            ctx.refs[logical] = url
            ctx.atts[(logical, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            ctx.atts[(logical, "QueueName")] = name
            ctx.atts[(logical, "QueueUrl")] = url
            del pending[logical]
            progressed = True
        if not progressed:
            sys.exit(f"cannot resolve queues {sorted(pending)} from template.yaml")

    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for logical, props in resources(template, "AWS::S3::Bucket"):
        # CloudFormation names a bucket without BucketName <stack>-<logical id>-<suffix>.
        name = ctx.resolve(props.get("BucketName", f"{STACK}-{logical.lower()}"))
        if name not in existing:
            if check:
                problems.append(f"bucket {name} is missing")
            else:
                s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        ctx.refs[logical] = name
        ctx.atts[(logical, "Arn")] = f"arn:aws:s3:::{name}"

    topics = {t["TopicArn"] for t in sns.list_topics().get("Topics", [])}
    for logical, props in resources(template, "AWS::SNS::Topic"):
        name = ctx.resolve(props.get("TopicName", logical))
        arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        if arn not in topics:
            if check:
                problems.append(f"topic {name} is missing")
            else:
                arn = sns.create_topic(Name=name)["TopicArn"]
        ctx.refs[logical] = arn
        ctx.atts[(logical, "TopicName")] = name
    return template, ctx, problems


def ensure_db_secret(client, check, problems):
    value = json.dumps({
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "username": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", "postgres"),
        "dbname": os.environ.get("DB_NAME", "adworkers"),
    })
    try:
        arn = client.describe_secret(SecretId=DB_SECRET_NAME)["ARN"]
        if not check:
            client.put_secret_value(SecretId=DB_SECRET_NAME, SecretString=value)
        return arn
    except client.exceptions.ResourceNotFoundException:
        if check:
            problems.append(f"secret {DB_SECRET_NAME} is missing")
            return "missing"
        return client.create_secret(Name=DB_SECRET_NAME, SecretString=value)["ARN"]


def env_value(value):
    """A value as a dotenv line takes it: quoted when it holds what the format reads as syntax
    (CATALOG_FEEDS has `=` inside)."""
    if any(c in value for c in "= #'\"\\"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def function_envs(template, ctx):
    """Each function's variables from the template, resolved for the local stack."""
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    local = {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "DB_SSL_MODE": "disable",
        # The local broker is plaintext; MSK's IAM listener is not.
        "KAFKA_AUTH": "none",
        # The demo's image server runs on loopback, which production always refuses.
        "IMAGE_FETCH_ALLOW_HOSTS": "127.0.0.1,localhost",
        "CATALOG_FETCH_ALLOW_HOSTS": "127.0.0.1,localhost",
        "CATALOG_REQUESTS_PER_SECOND": "20",
        # No local WebSocket API: web deliveries go to the local stand-in of its management
        # endpoint (local-triggers websocket).
        "WEBSOCKET_ENDPOINT": "http://127.0.0.1:9301",
        # The Lambda API is cargo lambda watch's (the admin API invokes the scheduled jobs).
        "AWS_ENDPOINT_URL_LAMBDA": os.environ.get("LAMBDA_INVOKE_URL", "http://127.0.0.1:9000"),
    }
    # A function's name is its crate's, as cargo lambda watch serves it.
    for logical, props in resources(template, "AWS::Serverless::Function"):
        ctx.refs[logical] = pathlib.PurePosixPath(props["CodeUri"]).name
    # Each function's timeout: cargo lambda watch gives every invocation a deadline in 1970,
    # which the functions' telemetry replaces with this (adapters::telemetry::deadline).
    default_timeout = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    local["LOCAL_FUNCTION_TIMEOUTS"] = ",".join(
        f"{pathlib.PurePosixPath(props['CodeUri']).name}={ctx.resolve(props.get('Timeout', default_timeout))}"
        for logical, props in sorted(resources(template, "AWS::Serverless::Function"))
    )
    envs = {}
    for logical, props in resources(template, "AWS::Serverless::Function"):
        name = pathlib.PurePosixPath(props["CodeUri"]).name
        variables = {**shared, **props.get("Environment", {}).get("Variables", {})}
        env = {key: str(ctx.resolve(value)) for key, value in variables.items() if key not in local}
        envs[name] = {**env, **local}
    return envs


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify, do not create")
    parser.add_argument("--topics", action="store_true",
                        help="print the Kafka topics the template declares: name partitions")
    args = parser.parse_args()

    raw = render.load(ROOT / "template.yaml")
    if args.topics:
        for topic in raw["Metadata"]["KafkaTopics"]:
            print(topic["Name"], topic["Partitions"])
        return
    session = boto3.session.Session(region_name=REGION)
    aws = {name: session.client(name, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
           for name in ("sqs", "s3", "sns", "secretsmanager")}
    template, ctx, problems = provision(raw, aws, args.check)
    if args.check:
        for problem in problems:
            print(f"local stack differs from template.yaml: {problem}", file=sys.stderr)
        if problems:
            sys.exit(1)
        print("local stack matches template.yaml")
        return

    STATE.mkdir(exist_ok=True)
    envs = function_envs(template, ctx)
    # `cargo lambda watch` serves every function with one environment: their union (the
    # functions share names only for shared settings).
    envs["functions"] = {k: v for env in envs.values() for k, v in env.items()}
    for name, env in envs.items():
        path = STATE / f"{name}.env"
        path.write_text("".join(f"{k}={env_value(v)}\n" for k, v in sorted(env.items())))
        print(f"  {path.relative_to(ROOT)}")
    summary = {logical: ctx.refs[logical] for logical in template["Resources"] if logical in ctx.refs}
    (STATE / "resources.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    # The template as expanded for this stack, parsed once here for every local tool (the
    # local MSK event sources read their mappings from it).
    (STATE / "template.local.json").write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
    for logical, value in sorted(summary.items()):
        print(f"  {logical:<32} {value}")


if __name__ == "__main__":
    main()
