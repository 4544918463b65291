#!/usr/bin/env python3
"""Offline check of template.yaml, with no AWS access.

1. Translates the SAM template to plain CloudFormation with the SAM
   translator (a policy loader that makes no network call, a placeholder
   CodeUri), which fails on a bad SAM property or a reference to nothing.
2. Lints the translated CloudFormation with cfn-lint.
3. Asserts the function's shape (runtime, architecture, build method) and the
   least-privilege rules: each statement's actions and resources, no wildcard,
   nothing but the basic logging policy besides.
4. Asserts every variable src/config.rs requires is set on the function.

Prints each problem and exits 1 if there is any. Usable as a module:
problems(template_text, config_source) returns the list.
"""

import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from cfnlint.api import ManualArgs, lint  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "SendEmailCodeFunction"
BASIC_EXECUTION = "service-role/AWSLambdaBasicExecutionRole"


class OfflinePolicyLoader:
    """Stands in for SAM's IAM lookup of managed policy names: none are used."""

    def load(self):
        return {}


def translate(template: dict) -> dict:
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://placeholder-bucket/bootstrap.zip"
    return transform(template, {}, OfflinePolicyLoader())


def required_variables(config_source: str) -> list[str]:
    return re.findall(r'required\("([A-Z_]+)"\)', config_source)


def as_list(value):
    return value if isinstance(value, list) else [value]


def check_function(sam: dict, out: list[str]) -> None:
    fn = sam["Resources"].get(FUNCTION)
    if not fn:
        out.append(f"no {FUNCTION} resource")
        return
    props = fn.get("Properties", {})
    expect = {
        "Runtime": "provided.al2023",
        "Handler": "bootstrap",
        "Architectures": ["arm64"],
    }
    for key, value in expect.items():
        if props.get(key) != value:
            out.append(f"{FUNCTION}.{key} is {props.get(key)!r}, expected {value!r}")
    if fn.get("Metadata", {}).get("BuildMethod") != "rust-cargolambda":
        out.append(f"{FUNCTION} Metadata.BuildMethod must be rust-cargolambda")
    if props.get("LoggingConfig", {}).get("LogFormat") != "JSON":
        out.append(f"{FUNCTION}.LoggingConfig.LogFormat must be JSON")


def check_environment(sam: dict, required: list[str], out: list[str]) -> None:
    variables = (
        sam["Resources"].get(FUNCTION, {}).get("Properties", {})
        .get("Environment", {}).get("Variables", {})
    )
    if not required:
        out.append("found no required variables in src/config.rs")
    for name in required:
        if variables.get(name) in (None, ""):
            out.append(f"required variable {name} is not set on {FUNCTION}")
    secret = json.dumps(variables.get("CODE_HMAC_SECRET", ""))
    if "resolve:secretsmanager" not in secret and "resolve:ssm-secure" not in secret:
        out.append("CODE_HMAC_SECRET must come from Secrets Manager or SSM, not a literal")


def refers_to(resource, logical_id: str) -> bool:
    text = json.dumps(resource)
    return f'"{logical_id}"' in text or f"${{{logical_id}" in text


def check_policies(cfn: dict, out: list[str]) -> None:
    roles = [
        (name, r) for name, r in cfn["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and name.startswith(FUNCTION)
    ]
    if len(roles) != 1:
        out.append(f"expected one role for {FUNCTION}, found {len(roles)}")
        return
    name, role = roles[0]
    props = role["Properties"]
    managed = [json.dumps(a) for a in props.get("ManagedPolicyArns", [])]
    if len(managed) != 1 or BASIC_EXECUTION not in managed[0]:
        out.append(f"{name}: managed policies must be only {BASIC_EXECUTION}, got {managed}")
    if "*" in json.dumps(props.get("Policies", [])):
        out.append(f"{name}: a wildcard appears in an inline policy")
    statements = [s for p in props.get("Policies", []) for s in as_list(p["PolicyDocument"]["Statement"])]
    expected = {
        "dynamodb:GetItem": [["ChallengesTable"], ["UsersTable", "UsersTableName"]],
        "dynamodb:UpdateItem": [["ChallengesTable"], ["RateLimitTable"]],
        "ses:SendEmail": [["SesIdentity"], ["SesConfigurationSet"]],
    }
    seen = {}
    for s in statements:
        if s.get("Effect") != "Allow":
            out.append(f"{name}: unexpected statement {s}")
            continue
        actions = as_list(s.get("Action"))
        if len(actions) != 1 or actions[0] not in expected:
            out.append(f"{name}: unexpected actions {actions}")
            continue
        seen[actions[0]] = as_list(s.get("Resource"))
    for action, targets in expected.items():
        resources = seen.get(action)
        if resources is None:
            out.append(f"{name}: no statement allows {action}")
            continue
        if len(resources) != len(targets):
            out.append(f"{name}: {action} must name exactly {len(targets)} resources, got {resources}")
            continue
        for resource, ids in zip(resources, targets):
            if not any(refers_to(resource, i) for i in ids):
                out.append(f"{name}: {action} resource {resource} is not {ids}")


def problems(template_text: str, config_source: str) -> list[str]:
    out: list[str] = []
    sam = yaml_parse(template_text)
    check_function(sam, out)
    check_environment(sam, required_variables(config_source), out)
    try:
        cfn = translate(yaml_parse(template_text))
    except Exception as err:  # the translator raises one error listing all causes
        out.append(f"SAM translation failed: {err}")
        return out
    for match in lint(json.dumps(cfn), regions=["us-east-1"], config=ManualArgs(regions=["us-east-1"])):
        out.append(f"cfn-lint {match.rule.id}: {match.message} ({'/'.join(map(str, match.path))})")
    check_policies(cfn, out)
    return out


def main() -> int:
    template = (ROOT / "template.yaml").read_text()
    config = (ROOT / "src" / "config.rs").read_text()
    found = problems(template, config)
    for p in found:
        print(f"template.yaml: {p}")
    if not found:
        print("template.yaml: SAM translation, cfn-lint, IAM and environment checks passed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
