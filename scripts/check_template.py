#!/usr/bin/env python3
"""Offline check of template.yaml, with no AWS access.

1. Translates the SAM template to plain CloudFormation with the SAM
   translator (a policy loader that makes no network call, a placeholder
   CodeUri), which fails on a bad SAM property or a reference to nothing.
2. Lints the translated CloudFormation with cfn-lint.
3. Asserts the function's shape (runtime, architecture, build method) and the
   least-privilege rules: each statement's actions and resources, no wildcard,
   nothing but the basic logging policy besides.
4. Asserts every variable src/config.rs requires is set on the function, and
   that each numeric setting has its parameter with the documented default and
   range, passed to the function under its variable name.
5. Evaluates the template's conditions for each way delivery tracking can be
   chosen (the default, EnableDeliveryTracking=false, an operator's own
   SesConfigurationSet, both) and asserts what is then deployed: the SES
   configuration set, its CloudWatch event destination (the six event types,
   the purpose dimension) and the bounce/complaint alarm exist exactly when
   the stack tracks delivery; SES_CONFIGURATION_SET names the set in use or is
   empty; the role may call ses:SendEmail on the identity and that set, nothing
   else.

Prints each problem and exits 1 if there is any. Usable as a module:
problems(template_text, config_source, source_text) returns the list.
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

# The tag the function puts on every message (src/aws/mailer.rs).
PURPOSE_TAG = ("purpose", "two-factor-email-code")
# The SES events published for the codes, spelt as CloudFormation wants them.
EVENT_TYPES = {"send", "delivery", "bounce", "complaint", "reject", "deliveryDelay"}
# The auto-tag SES fills with the configuration set's name.
CONFIGURATION_SET_DIMENSION = "ses:configuration-set"
ALARMED_METRICS = ("Bounce", "Complaint")
CONFIGURATION_SET = "AWS::SES::ConfigurationSet"
EVENT_DESTINATION = "AWS::SES::ConfigurationSetEventDestination"
ALARM = "AWS::CloudWatch::Alarm"

# Each numeric setting: parameter -> (variable, default, MinValue, MaxValue),
# the ranges the binary accepts (None: no upper bound).
NUMBER_PARAMETERS = {
    "RateLimitMax": ("RATE_LIMIT_MAX", 5, 1, None),
    "RateLimitWindowSeconds": ("RATE_LIMIT_WINDOW_SECONDS", 60, 1, None),
    "CodeTtlSeconds": ("CODE_TTL_SECONDS", 600, 1, None),
    "MaxCodesPerChallenge": ("MAX_CODES_PER_CHALLENGE", 5, 1, None),
    # 30 s is the production recommendation; the binary's own default is 0.
    "ResendCooldownSeconds": ("RESEND_COOLDOWN_SECONDS", 30, 0, None),
    "MaxCodesPerUser": ("MAX_CODES_PER_USER", 10, 0, None),
    "UserWindowSeconds": ("USER_WINDOW_SECONDS", 3600, 1, None),
    "RateLimitIpv6Prefix": ("RATE_LIMIT_IPV6_PREFIX", 64, 48, 128),
}

# How delivery tracking can be chosen: parameter overrides, and the
# configuration set the function must then send with ("own": the stack's).
OPERATOR_SET = "operator-set"
SCENARIOS = {
    "defaults": ({}, "own"),
    "EnableDeliveryTracking=false": ({"EnableDeliveryTracking": "false"}, None),
    "SesConfigurationSet given": ({"SesConfigurationSet": OPERATOR_SET}, OPERATOR_SET),
    "SesConfigurationSet given, tracking off": (
        {"SesConfigurationSet": OPERATOR_SET, "EnableDeliveryTracking": "false"},
        OPERATOR_SET,
    ),
}


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


def check_number_parameters(sam: dict, out: list[str]) -> None:
    params = sam.get("Parameters", {})
    variables = (
        sam["Resources"].get(FUNCTION, {}).get("Properties", {})
        .get("Environment", {}).get("Variables", {})
    )
    for name, (variable, default, low, high) in NUMBER_PARAMETERS.items():
        param = params.get(name)
        if param is None:
            out.append(f"parameter {name} is missing")
            continue
        if param.get("Type") != "Number":
            out.append(f"parameter {name} must be Type Number, is {param.get('Type')!r}")
        for key, want in (("Default", default), ("MinValue", low), ("MaxValue", high)):
            got = param.get(key)
            if (None if got is None else str(got)) != (None if want is None else str(want)):
                out.append(f"parameter {name}: {key} is {got!r}, expected {want!r}")
        if variables.get(variable) != {"Ref": name}:
            out.append(f"variable {variable} on {FUNCTION} must be !Ref {name}, is {variables.get(variable)!r}")


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


NO_VALUE = object()


class Deployment:
    """The template as CloudFormation would deploy it for some parameter
    values: conditions decided, Fn::If chosen, AWS::NoValue dropped. Other
    resources are written "<LogicalId>" (their Ref), pseudo parameters stay as
    ${AWS::...}."""

    def __init__(self, cfn: dict, overrides: dict[str, str]):
        self.params = {
            name: str(p["Default"]) if "Default" in p else f"{name}-value"
            for name, p in cfn.get("Parameters", {}).items()
        }
        self.params.update(overrides)
        self.conditions = cfn.get("Conditions", {})
        self.resources = cfn["Resources"]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.conditions[name]))

    def active(self, resource: dict) -> bool:
        return "Condition" not in resource or self.condition(resource["Condition"])

    def of_type(self, kind: str) -> dict[str, dict]:
        return {
            name: self.resolve(r.get("Properties", {}))
            for name, r in self.resources.items()
            if r["Type"] == kind and self.active(r)
        }

    def name(self, ref: str) -> str:
        if ref in self.params:
            return self.params[ref]
        if ref.startswith("AWS::"):
            return "${" + ref + "}"
        return f"<{ref}>"

    def resolve(self, value):
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.name(arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if fn == "Fn::GetAtt":
                return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
            if fn == "Fn::Sub" and isinstance(arg, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self.name(m.group(1)), arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


def dimension_map(dimensions) -> dict:
    return {d.get("Name"): d.get("Value") for d in as_list(dimensions or [])}


def alarmed_metrics(alarm: dict) -> list[tuple[str, str, dict]]:
    """(namespace, metric, dimensions) of every metric an alarm's answer uses."""
    if "MetricName" in alarm:
        return [(alarm.get("Namespace"), alarm["MetricName"], dimension_map(alarm.get("Dimensions")))]
    queries = as_list(alarm.get("Metrics", []))
    answers = [q for q in queries if q.get("ReturnData", True)]
    if len(answers) != 1:
        return []
    answer = answers[0]
    used = [q for q in queries if q is answer or re.search(rf"\b{re.escape(q.get('Id', ''))}\b", answer.get("Expression", ""))]
    found = []
    for q in used:
        metric = q.get("MetricStat", {}).get("Metric")
        if metric:
            found.append((metric.get("Namespace"), metric.get("MetricName"), dimension_map(metric.get("Dimensions"))))
    return found


def check_tracking_resources(dep: Deployment, label: str, out: list[str]) -> str | None:
    """The stack's own tracking, when it should have it; returns "<SetId>"."""
    sets = dep.of_type(CONFIGURATION_SET)
    if len(sets) != 1:
        out.append(f"{label}: expected one {CONFIGURATION_SET}, found {sorted(sets)}")
        return None
    own = f"<{next(iter(sets))}>"
    destinations = [d for d in dep.of_type(EVENT_DESTINATION).values() if d.get("ConfigurationSetName") == own]
    if len(destinations) != 1:
        out.append(f"{label}: expected one event destination on {own}, found {len(destinations)}")
        return own
    dest = destinations[0].get("EventDestination", {})
    if dest.get("Enabled") is not True:
        out.append(f"{label}: the event destination must be Enabled: true")
    others = sorted(k for k in dest if k.endswith("Destination") and k != "CloudWatchDestination")
    if "CloudWatchDestination" not in dest or others:
        out.append(f"{label}: the event destination must go to CloudWatch only, has {sorted(k for k in dest if k.endswith('Destination'))}")
    types = set(as_list(dest.get("MatchingEventTypes", [])))
    for missing in sorted(EVENT_TYPES - types):
        out.append(f"{label}: event type {missing} is not published")
    for extra in sorted(types - EVENT_TYPES):
        out.append(f"{label}: event type {extra} is published but not wanted")
    dims = {
        d.get("DimensionName"): d
        for d in as_list(dest.get("CloudWatchDestination", {}).get("DimensionConfigurations", []))
    }
    for name in (PURPOSE_TAG[0], CONFIGURATION_SET_DIMENSION):
        dim = dims.get(name)
        if dim is None:
            out.append(f"{label}: the CloudWatch destination has no {name} dimension")
        elif str(dim.get("DimensionValueSource", "")).replace("_", "").lower() != "messagetag":
            out.append(f"{label}: the {name} dimension must come from the message tag, not {dim.get('DimensionValueSource')!r}")
    # SES publishes each event with all of the destination's dimensions, so
    # an alarm matches only with exactly that set of names and these values.
    expected_dims = {name: None for name in dims}
    expected_dims.update({PURPOSE_TAG[0]: PURPOSE_TAG[1], CONFIGURATION_SET_DIMENSION: own})
    watched = [m for a in dep.of_type(ALARM).values() for m in alarmed_metrics(a)]
    for metric in ALARMED_METRICS:
        if ("AWS/SES", metric, expected_dims) not in watched:
            out.append(f"{label}: no alarm watches AWS/SES {metric} with dimensions {expected_dims}")
    return own


def check_deployments(cfn: dict, out: list[str]) -> None:
    for label, (overrides, expected) in SCENARIOS.items():
        dep = Deployment(cfn, overrides)
        missing = [p for p in overrides if p not in cfn.get("Parameters", {})]
        if missing:
            out.append(f"{label}: no parameter {missing}")
            continue
        if expected == "own":
            set_name = check_tracking_resources(dep, label, out)
            if set_name is None:
                continue
        else:
            set_name = expected
            leftovers = sorted(
                n for kind in (CONFIGURATION_SET, EVENT_DESTINATION, ALARM) for n in dep.of_type(kind)
            )
            if leftovers:
                out.append(f"{label}: the stack must not create {leftovers}")
        fn = dep.resolve(cfn["Resources"].get(FUNCTION, {}).get("Properties", {}))
        value = fn.get("Environment", {}).get("Variables", {}).get("SES_CONFIGURATION_SET", "")
        if value != (set_name or ""):
            out.append(f"{label}: SES_CONFIGURATION_SET is {value!r}, expected {set_name or ''!r}")
        arn = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:"
        want = [arn + "identity/" + dep.params.get("SesIdentity", "")]
        if set_name:
            want.append(arn + "configuration-set/" + set_name)
        roles = dep.of_type("AWS::IAM::Role")
        statements = [
            s for r in roles.values() for p in r.get("Policies", [])
            for s in as_list(p["PolicyDocument"]["Statement"])
            if "ses:" in json.dumps(s.get("Action"))
        ]
        if len(statements) != 1 or as_list(statements[0].get("Action")) != ["ses:SendEmail"]:
            out.append(f"{label}: expected one statement allowing only ses:SendEmail, got {statements}")
        elif as_list(statements[0].get("Resource")) != want:
            out.append(f"{label}: ses:SendEmail must be on exactly {want}, is on {statements[0].get('Resource')}")


def check_purpose_tag(source_text: str, out: list[str]) -> None:
    if PURPOSE_TAG[1] not in source_text:
        out.append(f"the alarm watches purpose={PURPOSE_TAG[1]}, but src/ never tags a message so")


def problems(template_text: str, config_source: str, source_text: str | None = None) -> list[str]:
    out: list[str] = []
    sam = yaml_parse(template_text)
    check_function(sam, out)
    check_environment(sam, required_variables(config_source), out)
    check_number_parameters(sam, out)
    if source_text is not None:
        check_purpose_tag(source_text, out)
    try:
        cfn = translate(yaml_parse(template_text))
    except Exception as err:  # the translator raises one error listing all causes
        out.append(f"SAM translation failed: {err}")
        return out
    for match in lint(json.dumps(cfn), regions=["us-east-1"], config=ManualArgs(regions=["us-east-1"])):
        out.append(f"cfn-lint {match.rule.id}: {match.message} ({'/'.join(map(str, match.path))})")
    check_policies(cfn, out)
    check_deployments(cfn, out)
    return out


def main() -> int:
    template = (ROOT / "template.yaml").read_text()
    config = (ROOT / "src" / "config.rs").read_text()
    sources = "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.rs")))
    found = problems(template, config, sources)
    for p in found:
        print(f"template.yaml: {p}")
    if not found:
        print("template.yaml: SAM translation, cfn-lint, IAM, environment, parameter and delivery-tracking checks passed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
