#!/usr/bin/env python3
"""Offline check of template.yaml, with no AWS access.

1. Translates the SAM template to plain CloudFormation with the SAM
   translator (a policy loader that makes no network call, a placeholder
   CodeUri), once for each set of parameter values checked below, which fails
   on a bad SAM property or a reference to nothing.
2. Lints with cfn-lint the CloudFormation that the default stack and a stack
   with its own capacity provider deploy; main() also lints template.yaml as
   written (cfn-lint reads SAM and AWS::LanguageExtensions itself).
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
6. Lambda Managed Instances, off by default: translates the template for
   each way they can be chosen (neither parameter, an existing provider's
   CapacityProviderArn, CapacityProviderSubnetIds for a provider of the
   stack's own, both) and asserts the function then has no capacity provider,
   the given one, or the stack's own arm64 provider in the given subnets and
   security groups, with 2,048 MB or more, its concurrency from
   ManagedInstancesConcurrency, and the same role and timeout as on demand.
   template.yaml declares AWS::LanguageExtensions before SAM, which settles
   each parameter-bound !If before SAM reads it; settle() stands in for it
   here, and only when the template declares it.
7. The README's cargo-lambda path ("Without SAM") against the template:
   `cargo lambda build` for the template's architecture, `cargo lambda deploy`
   with its memory, timeout, runtime, binary name and exactly its environment
   variable names (values, where the README gives one, equal to the
   parameter's default); and its SAM section shows each `sam` command
   scripts/test.sh runs, verbatim.

Prints each problem and exits 1 if there is any. Usable as a module:
problems(template_text, config_source, source_text) and
readme_problems(template_text, readme_text, test_script_text) return the list.
"""

import copy
import json
import os
import re
import shlex
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


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
CAPACITY_PROVIDER = "AWS::Lambda::CapacityProvider"
# The smallest function Lambda Managed Instances run (2 GB, one vCPU).
MANAGED_MIN_MEMORY = 2048
# PerExecutionEnvironmentMaxConcurrency's range in the Lambda API.
MANAGED_CONCURRENCY_RANGE = (1, 1600)
PROVIDER_ARN = "arn:aws:lambda:us-east-1:123456789012:capacity-provider:operator-provider"
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60719"]
SECURITY_GROUPS = ["sg-0123456789abcdef0"]
OWN_PROVIDER_ARGS = {
    "CapacityProviderSubnetIds": ",".join(SUBNETS),
    "CapacityProviderSecurityGroupIds": ",".join(SECURITY_GROUPS),
}
# How managed instances can be chosen, and the provider the function must
# then run on (None: ordinary Lambda; "own": one this stack creates).
OWN_PROVIDER = "CapacityProviderSubnetIds given"
MANAGED_SCENARIOS = {
    "defaults": ({}, None),
    "CapacityProviderArn given": ({"CapacityProviderArn": PROVIDER_ARN}, PROVIDER_ARN),
    OWN_PROVIDER: (OWN_PROVIDER_ARGS, "own"),
    "CapacityProviderArn and subnets given": ({"CapacityProviderArn": PROVIDER_ARN, **OWN_PROVIDER_ARGS}, PROVIDER_ARN),
}


class OfflinePolicyLoader:
    """Stands in for SAM's IAM lookup of managed policy names: none are used."""

    def load(self):
        return {}


def transforms(template: dict) -> list:
    return as_list(template.get("Transform", []))


def settle(template: dict, overrides: dict[str, str]) -> dict:
    """What AWS::LanguageExtensions hands SAM for these parameter values, as
    far as this template needs it: each !If decided by its condition and
    AWS::NoValue dropped. In a resource whose condition is false, the
    transform also drops every Ref to a parameter (SAM CLI's local copy of the
    transform does so to match the service), and SAM still validates that
    resource."""
    dep = Deployment(template, overrides)

    def walk(value, dropped: bool):
        if isinstance(value, list):
            return [v for v in (walk(v, dropped) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
                return walk(arg[1] if dep.condition(arg[0]) else arg[2], dropped)
            if fn == "Ref" and (arg == "AWS::NoValue" or (dropped and arg in dep.params)):
                return NO_VALUE
        walked = {k: walk(v, dropped) for k, v in value.items()}
        return {k: v for k, v in walked.items() if v is not NO_VALUE}

    settled = dict(template)
    for section in ("Resources", "Outputs"):
        settled[section] = {
            name: walk(entry, "Condition" in entry and not dep.condition(entry["Condition"]))
            for name, entry in template.get(section, {}).items()
        }
    settled["Transform"] = [t for t in transforms(template) if t != LANGUAGE_EXTENSIONS]
    return settled


def translate(template: dict, overrides: dict[str, str] | None = None) -> dict:
    """The CloudFormation the stack would get for these parameter values.
    Without AWS::LanguageExtensions declared before SAM, SAM reads the
    template as written."""
    names = transforms(template)
    if LANGUAGE_EXTENSIONS in names and SAM_TRANSFORM in names and names.index(LANGUAGE_EXTENSIONS) < names.index(SAM_TRANSFORM):
        template = settle(template, overrides or {})
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
        "ses:SendEmail": [["SesIdentity"], ["SesConfigurationSet", "DeliveryConfigurationSet"]],
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
        declared = cfn.get("Parameters", {})
        self.params = {
            name: str(p["Default"]) if "Default" in p else f"{name}-value"
            for name, p in declared.items()
        }
        self.params.update(overrides)
        self.lists = {n for n, p in declared.items() if str(p.get("Type", "")).startswith(("CommaDelimitedList", "List<"))}
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

    def name(self, ref: str):
        if ref in self.lists:
            return self.params[ref].split(",")
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
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                items = self.resolve(arg[1])
                return arg[0].join(map(str, items)) if isinstance(items, list) else {fn: arg}
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


def check_deployments(translations: dict[str, dict], out: list[str]) -> None:
    for label, (overrides, expected) in SCENARIOS.items():
        cfn = translations.get(label)
        if cfn is None:
            continue
        dep = Deployment(cfn, overrides)
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


def function_in(dep: Deployment) -> dict:
    return dep.resolve(dep.resources.get(FUNCTION, {}).get("Properties", {}))


def check_concurrency_parameter(sam: dict, out: list[str]) -> None:
    param = sam.get("Parameters", {}).get("ManagedInstancesConcurrency")
    if param is None:
        out.append("parameter ManagedInstancesConcurrency is missing")
        return
    low, high = MANAGED_CONCURRENCY_RANGE
    if param.get("Type") != "Number" or str(param.get("MinValue")) != str(low) or str(param.get("MaxValue")) != str(high):
        out.append(f"parameter ManagedInstancesConcurrency must be a Number from {low} to {high}")


def check_managed_instances(translations: dict[str, dict], out: list[str]) -> None:
    on_demand = None
    for label, (overrides, expected) in MANAGED_SCENARIOS.items():
        cfn = translations.get(label)
        if cfn is None:
            continue
        dep = Deployment(cfn, overrides)
        fn = function_in(dep)
        providers = dep.of_type(CAPACITY_PROVIDER)
        config = fn.get("CapacityProviderConfig")
        if expected is None:
            on_demand = (dep, fn)
            if config is not None or providers:
                out.append(f"{label}: the function must be ordinary Lambda (no capacity provider), has {config} and {sorted(providers)}")
            continue
        if expected == "own":
            if len(providers) != 1:
                out.append(f"{label}: expected the stack to create one {CAPACITY_PROVIDER}, found {sorted(providers)}")
                continue
            name, provider = next(iter(providers.items()))
            want_arn = (f"<{name}.Arn>", f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:capacity-provider:<{name}>")
            vpc = provider.get("VpcConfig", {})
            if vpc.get("SubnetIds") != SUBNETS or vpc.get("SecurityGroupIds") != SECURITY_GROUPS:
                out.append(f"{label}: the capacity provider must use the given subnets {SUBNETS} and security groups {SECURITY_GROUPS}, has {vpc}")
            architectures = provider.get("InstanceRequirements", {}).get("Architectures")
            if architectures != fn.get("Architectures"):
                out.append(f"{label}: the capacity provider's instances are {architectures}, the function is {fn.get('Architectures')}")
            if not provider.get("PermissionsConfig", {}).get("CapacityProviderOperatorRoleArn"):
                out.append(f"{label}: the capacity provider has no operator role")
        else:
            want_arn = (expected,)
            if providers:
                out.append(f"{label}: the stack must not create a capacity provider, creates {sorted(providers)}")
        managed = (config or {}).get("LambdaManagedInstancesCapacityProviderConfig", {})
        if managed.get("CapacityProviderArn") not in want_arn:
            out.append(f"{label}: the function must run on {want_arn[-1]}, its capacity provider is {managed.get('CapacityProviderArn')!r}")
        concurrency = dep.params.get("ManagedInstancesConcurrency")
        if concurrency is None or str(managed.get("PerExecutionEnvironmentMaxConcurrency")) != concurrency:
            out.append(f"{label}: PerExecutionEnvironmentMaxConcurrency must be ManagedInstancesConcurrency, is {managed.get('PerExecutionEnvironmentMaxConcurrency')!r}")
        memory = fn.get("MemorySize")
        if not str(memory).isdigit() or int(memory) < MANAGED_MIN_MEMORY:
            out.append(f"{label}: MemorySize is {memory!r}, managed instances need at least {MANAGED_MIN_MEMORY}")
        if on_demand is not None:
            base_dep, base_fn = on_demand
            for key in ("Timeout", "Architectures", "Runtime", "Handler", "Environment"):
                if fn.get(key) != base_fn.get(key):
                    out.append(f"{label}: {key} is {fn.get(key)!r}, on demand it is {base_fn.get(key)!r}")
            roles, base_roles = dep.of_type("AWS::IAM::Role"), base_dep.of_type("AWS::IAM::Role")
            role = next((r for n, r in roles.items() if n.startswith(FUNCTION)), None)
            base_role = next((r for n, r in base_roles.items() if n.startswith(FUNCTION)), None)
            if role != base_role:
                out.append(f"{label}: the function's role differs from the on-demand one")


def check_purpose_tag(source_text: str, out: list[str]) -> None:
    if PURPOSE_TAG[1] not in source_text:
        out.append(f"the alarm watches purpose={PURPOSE_TAG[1]}, but src/ never tags a message so")


def deployed(cfn: dict, overrides: dict[str, str]) -> dict:
    """A translation settled for some parameter values, as the stack it
    deploys: the resources and outputs whose conditions hold, without their
    conditions, and the parameters still referred to (given these values). cfn-lint would read the
    settled template's leftover conditions as guarding nothing."""
    dep = Deployment(cfn, overrides)
    doc = {k: v for k, v in cfn.items() if k not in ("Conditions", "Resources", "Outputs", "Parameters")}
    for section in ("Resources", "Outputs"):
        doc[section] = {
            name: {k: v for k, v in entry.items() if k != "Condition"}
            for name, entry in cfn.get(section, {}).items() if dep.active(entry)
        }
    text = json.dumps(doc)
    if '"Fn::If"' in text or '{"Condition":' in text:
        return cfn
    doc["Parameters"] = {
        name: {**p, "Default": overrides[name]} if name in overrides else p
        for name, p in cfn.get("Parameters", {}).items()
        if f'"Ref": "{name}"' in text or f"${{{name}}}" in text
    }
    return doc


def lint_problems(label: str, text: str, out: list[str]) -> None:
    for match in lint(text, regions=["us-east-1"], config=ManualArgs(regions=["us-east-1"])):
        out.append(f"{label}cfn-lint {match.rule.id}: {match.message} ({'/'.join(map(str, match.path))})")


def problems(template_text: str, config_source: str, source_text: str | None = None) -> list[str]:
    out: list[str] = []
    sam = yaml_parse(template_text)
    check_function(sam, out)
    check_environment(sam, required_variables(config_source), out)
    check_number_parameters(sam, out)
    check_concurrency_parameter(sam, out)
    if source_text is not None:
        check_purpose_tag(source_text, out)
    # One translation per way of deploying the stack (delivery tracking,
    # managed instances); "defaults" is both tables' first.
    translations: dict[str, dict] = {}
    for label, (overrides, _) in {**SCENARIOS, **MANAGED_SCENARIOS}.items():
        missing = [p for p in overrides if p not in sam.get("Parameters", {})]
        if missing:
            out.append(f"{label}: no parameter {missing}")
            continue
        try:
            translations[label] = translate(copy.deepcopy(sam), overrides)
        except Exception as err:  # the translator raises one error listing all causes
            out.append(f"{label}: SAM translation failed: {err}")
    cfn = translations.get("defaults")
    if cfn is None:
        return out
    # The stacks that the default and a provider of the stack's own deploy
    # (main() also lints template.yaml as written).
    lint_problems("defaults: ", json.dumps(deployed(cfn, {})), out)
    if OWN_PROVIDER in translations:
        lint_problems(f"{OWN_PROVIDER}: ", json.dumps(deployed(translations[OWN_PROVIDER], OWN_PROVIDER_ARGS)), out)
    check_policies(cfn, out)
    check_deployments(translations, out)
    check_managed_instances(translations, out)
    return out


ELLIPSIS = "\u2026"
# `cargo lambda deploy` options that take a value (the others are switches).
DEPLOY_VALUE_OPTIONS = {
    "--memory", "--timeout", "--env-var", "--env-vars", "--role", "--iam-role", "--binary-name",
    "--runtime", "--region", "-r", "--profile", "-p", "--alias", "-a", "--layer", "--layer-arn",
    "--subnet-ids", "--security-group-ids", "--description", "--log-retention", "--tag", "--tags",
    "--tracing", "--s3-bucket", "--s3-key", "--include", "-i", "--env-file", "--binary-path",
    "--lambda-dir", "-l", "--manifest-path", "--retry-attempts", "--endpoint-url", "-o", "--output-format",
}
DEPLOY_DEFAULT_RUNTIME = "provided.al2023"


def readme_section(readme_text: str, heading: str) -> str:
    """The text under a heading, up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = readme_text.splitlines()
    if heading not in lines:
        return ""
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def shell_commands(section: str) -> list[list[str]]:
    """The commands in a section's ```sh blocks, continuation lines joined,
    comments dropped, each split into words."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def deploy_options(words: list[str]) -> tuple[dict[str, list[str]], set[str]]:
    options: dict[str, list[str]] = {}
    switches = set()
    rest = iter(words)
    for word in rest:
        name, eq, value = word.partition("=")
        if name in DEPLOY_VALUE_OPTIONS:
            options.setdefault(name, []).append(value if eq else next(rest, ""))
        elif word.startswith("-"):
            switches.add(word)
    return options, switches


def readme_problems(template_text: str, readme_text: str, test_script_text: str) -> list[str]:
    out: list[str] = []
    sam = yaml_parse(template_text)
    fn_raw = sam.get("Resources", {}).get(FUNCTION, {})
    settled = settle(sam, {}) if LANGUAGE_EXTENSIONS in transforms(sam) else sam
    fn = function_in(Deployment(settled, {}))
    params = sam.get("Parameters", {})

    without_sam = readme_section(readme_text, "### Without SAM")
    commands = shell_commands(without_sam)
    build = next((c for c in commands if c[:3] == ["cargo", "lambda", "build"]), None)
    deploy = next((c for c in commands if c[:3] == ["cargo", "lambda", "deploy"]), None)
    if build is None or deploy is None:
        out.append('README "Without SAM" must show `cargo lambda build` and `cargo lambda deploy`')
        return out
    aarch64 = "--arm64" in build or any("aarch64" in w for w in build)
    if ["arm64" if aarch64 else "x86_64"] != fn.get("Architectures"):
        out.append(f"README: `cargo lambda build` builds for {'arm64' if aarch64 else 'x86_64'}, the template's function is {fn.get('Architectures')}")
    options, _ = deploy_options(deploy[3:])
    want = {
        "--memory": fn.get("MemorySize"),
        "--timeout": fn.get("Timeout"),
        "--binary-name": fn_raw.get("Metadata", {}).get("BuildProperties", {}).get("Binary"),
    }
    for option, value in want.items():
        got = options.get(option, [None])[-1]
        if got is None or str(got) != str(value):
            out.append(f"README: `cargo lambda deploy {option} {got}`, the template says {value}")
    runtime = options.get("--runtime", [DEPLOY_DEFAULT_RUNTIME])[-1]
    if runtime != fn.get("Runtime"):
        out.append(f"README: `cargo lambda deploy` uses runtime {runtime}, the template {fn.get('Runtime')}")

    readme_vars: dict[str, str] = {}
    for pairs in options.get("--env-var", []) + options.get("--env-vars", []):
        for pair in filter(None, pairs.split(",")):
            name, _, value = pair.partition("=")
            readme_vars[name] = value
    template_vars = fn_raw.get("Properties", {}).get("Environment", {}).get("Variables", {})
    for name in sorted(set(template_vars) - set(readme_vars)):
        out.append(f"README: `cargo lambda deploy` does not set {name}, which the template sets")
    for name in sorted(set(readme_vars) - set(template_vars)):
        out.append(f"README: `cargo lambda deploy` sets {name}, which the template does not")
    for name, value in readme_vars.items():
        source = template_vars.get(name)
        if value == ELLIPSIS or source is None:
            continue
        if isinstance(source, dict) and set(source) == {"Ref"} and "Default" in params.get(source["Ref"], {}):
            expected = str(params[source["Ref"]]["Default"])
        elif isinstance(source, (str, int, float)):
            expected = str(source)
        else:
            continue
        if value != expected:
            out.append(f"README: `cargo lambda deploy` sets {name}={value}, the template's default is {expected}")

    sam_commands = re.search(r"^SAM_COMMANDS=\((.*?)\)", test_script_text, re.M | re.S)
    if not sam_commands:
        out.append("scripts/test.sh has no SAM_COMMANDS=(...)")
        return out
    deploying = readme_section(readme_text, "## Deploying")
    shown = {" ".join(c) for c in shell_commands(deploying.split("### Without SAM")[0])}
    for command in shlex.split(sam_commands.group(1)):
        if command not in shown:
            out.append(f"README: the SAM section does not show `{command}`, which CI runs")
    return out


def main() -> int:
    template = (ROOT / "template.yaml").read_text()
    config = (ROOT / "src" / "config.rs").read_text()
    sources = "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.rs")))
    found = problems(template, config, sources)
    # cfn-lint reads SAM and AWS::LanguageExtensions itself, every condition
    # at once, as `sam validate --lint` does later in CI.
    lint_problems("", template, found)
    for p in found:
        print(f"template.yaml: {p}")
    drift = readme_problems(template, (ROOT / "README.md").read_text(), (ROOT / "scripts" / "test.sh").read_text())
    for p in drift:
        print(p)
    if not found:
        print("template.yaml: SAM translation, cfn-lint, IAM, environment, parameter, delivery-tracking and managed-instances checks passed")
    if not drift:
        print("README.md: the cargo-lambda deploy flags match the template; the SAM section shows the sam commands CI runs")
    return 1 if found or drift else 0


if __name__ == "__main__":
    sys.exit(main())
