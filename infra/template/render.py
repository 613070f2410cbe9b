#!/usr/bin/env python3
"""template.yaml as CloudFormation will deploy it, for the checks that read resources.

Two stages, each done by the tool AWS ships for it rather than by us:
  expanded  AWS::LanguageExtensions applied (Fn::ForEach, Fn::FindInMap, Fn::ToJsonString) by
            SAM CLI's implementation of the transform; still a SAM template. provision.py
            reads this one: its queues and functions are the template's.
  rendered  the SAM transform applied by samtranslator: plain CloudFormation, what checkov
            scans and the contract test reads.

    render.py [--out DIR] [--template FILE]   writes DIR/template.expanded.json and
                                              DIR/template.rendered.json (DIR: .stack)

Parameters get example values (SAMPLE_PARAMETERS) so conditions and ARNs resolve the way a
real deploy would; nothing here talks to AWS.
"""
import argparse
import copy
import json
import os
import pathlib
import re
import sys

from samcli.lib.cfn_language_extensions.api import process_template
from samcli.lib.cfn_language_extensions.models import PseudoParameterValues, ResolutionMode
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

ROOT = pathlib.Path(__file__).resolve().parents[2]
STACK = "adworkers"
REGION = "ap-northeast-2"
ACCOUNT = "123456789012"
# samtranslator asks boto3 for the region it translates for.
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

# A deploy as docs/operations.md describes it: endpoints created, an e-mail subscribed, and a
# cluster whose name ends in "cluster" (the ARN shape that once broke every topic grant).
SAMPLE_PARAMETERS = {
    "DatabaseSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:adworkers/database-AbCdEf",
    "VpcId": "vpc-0123456789abcdef0",
    "VpcCidrBlock": "10.0.0.0/16",
    "VpcSubnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "VpcSecurityGroupIds": ["sg-0123456789abcdef0"],
    "PrivateRouteTableIds": ["rtb-0123456789abcdef0"],
    "MskClusterArn": f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/ads-cluster/0a1b2c3d-4e5f-6789-abcd-ef0123456789-3",
    "MskBootstrapBrokers": "b-1.ads.kafka.ap-northeast-2.amazonaws.com:9098,b-2.ads.kafka.ap-northeast-2.amazonaws.com:9098",
    "RedisUrl": "rediss://budgets.cache.amazonaws.com:6379",
    "AlarmEmail": "oncall@example.com",
    "JwtIssuer": "https://auth.example.com/",
    "JwtAudience": "adworkers-ops",
    "JwtJwksUrl": "https://auth.example.com/.well-known/jwks.json",
}


class NoManagedPolicies:
    """samtranslator asks for AWS managed policy ARNs only for a function's `Policies`
    shorthand; every role here is written out, so there is nothing to look up."""

    def load(self):
        return {}


def load(path=ROOT / "template.yaml"):
    return yaml_parse(pathlib.Path(path).read_text())


def expand(template, parameters=None, stack=STACK):
    """Applies AWS::LanguageExtensions; the result is a SAM template."""
    values = {**SAMPLE_PARAMETERS, **(parameters or {})}
    expanded = process_template(
        copy.deepcopy(template),
        parameter_values=values,
        pseudo_parameters=PseudoParameterValues(
            region=REGION, account_id=ACCOUNT, stack_name=stack, partition="aws"),
        resolution_mode=ResolutionMode.PARTIAL,
    )
    expanded = _restore_subs(expanded)
    transforms = expanded.get("Transform")
    if isinstance(transforms, list):
        expanded["Transform"] = [t for t in transforms if t != "AWS::LanguageExtensions"]
        if len(expanded["Transform"]) == 1:
            expanded["Transform"] = expanded["Transform"][0]
    return expanded


def _restore_subs(value):
    """SAM CLI's partial resolution turns `Fn::Sub "${Bucket.Arn}/*"` into the plain string
    `${Bucket.Arn}/*` when only resource attributes are left in it (CloudFormation, which
    expands the transform itself, keeps the Sub; `sam build` deploys the original template).
    A `${...}` left in a plain string can only come from there: wrap it back."""
    if isinstance(value, dict):
        return {key: _restore_subs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_subs(item) for item in value]
    if isinstance(value, str) and re.search(r"\$\{[A-Za-z][\w.:]*\}", value):
        return {"Fn::Sub": value}
    return value


def render(template, parameters=None, stack=STACK):
    """The CloudFormation template CloudFormation deploys."""
    expanded = expand(template, parameters, stack)
    # `sam package` uploads each function's code and points CodeUri at it; do the same on paper.
    for resource in expanded["Resources"].values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and not str(props.get("CodeUri")).startswith("s3://"):
            props["CodeUri"] = f"s3://{STACK}-artifacts/{pathlib.PurePosixPath(props['CodeUri']).name}.zip"
    values = {**SAMPLE_PARAMETERS, **(parameters or {}), "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
              "AWS::StackName": stack, "AWS::Partition": "aws"}
    return transform(expanded, values, NoManagedPolicies(), passthrough_metadata=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / ".stack"))
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    template = load(args.template)
    try:
        expanded = expand(template)
        rendered = render(template)
    except Exception as err:  # the tools' own errors say what is wrong with the template
        sys.exit(f"cannot render {args.template}: {err}")
    (out / "template.expanded.json").write_text(json.dumps(expanded, indent=1, sort_keys=True) + "\n")
    (out / "template.rendered.json").write_text(json.dumps(rendered, indent=1, sort_keys=True) + "\n")
    print(f"{len(rendered['Resources'])} resources -> {out / 'template.rendered.json'}")


if __name__ == "__main__":
    main()
