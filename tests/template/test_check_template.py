"""Proves scripts/check_template.py catches broken templates: each test breaks
the real template.yaml in one way and expects the check to object."""

import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from check_template import problems, readme_problems  # noqa: E402

TEMPLATE = (ROOT / "template.yaml").read_text()
README = (ROOT / "README.md").read_text()
TEST_SCRIPT = (ROOT / "scripts" / "test.sh").read_text()
CONFIG = (ROOT / "src" / "config.rs").read_text()
SOURCES = "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.rs")))


def broken(old: str, new: str, count: int = 1) -> str:
    assert TEMPLATE.count(old) >= 1, f"{old!r} not in template.yaml"
    return TEMPLATE.replace(old, new, count)


def without_block(start: str) -> str:
    """The template without the resource or parameter whose block starts at
    the line `start` (up to the next line indented as much or less)."""
    lines = TEMPLATE.splitlines(keepends=True)
    first = lines.index(start + "\n")
    indent = len(start) - len(start.lstrip())
    last = first + 1
    while last < len(lines) and (not lines[last].strip() or len(lines[last]) - len(lines[last].lstrip()) > indent):
        last += 1
    return "".join(lines[:first] + lines[last:])


def parameter_block(name: str) -> str:
    start = TEMPLATE.index(f"\n  {name}:\n") + 1
    end = TEMPLATE.index("\n    Description:", start)
    return TEMPLATE[start:end]


def broken_parameter(name: str, old: str, new: str) -> str:
    block = parameter_block(name)
    assert block.count(old) == 1, f"{old!r} not once in parameter {name}"
    return TEMPLATE.replace(block, block.replace(old, new), 1)


class CheckTemplate(unittest.TestCase):
    def assert_caught(self, text: str, *words: str) -> None:
        found = problems(text, CONFIG)
        self.assertTrue(found, "the check passed a broken template")
        joined = "\n".join(found)
        for word in words:
            self.assertIn(word, joined)

    def test_shipped_template_passes(self):
        self.assertEqual(problems(TEMPLATE, CONFIG, SOURCES), [])

    def test_ref_to_a_missing_resource_is_caught(self):
        self.assert_caught(broken("CHALLENGES_TABLE: !Ref ChallengesTable", "CHALLENGES_TABLE: !Ref ChallengeTable"))

    def test_getatt_on_a_missing_resource_is_caught(self):
        self.assert_caught(broken("- !GetAtt RateLimitTable.Arn", "- !GetAtt RateLimitsTable.Arn"))

    def test_wrong_architecture_is_caught(self):
        self.assert_caught(broken("Architectures: [arm64]", "Architectures: [x86_64]"), "Architectures")

    def test_misspelled_property_is_caught(self):
        self.assert_caught(broken("MemorySize: !If", "MemorySise: !If"))

    def test_wildcard_resource_is_caught(self):
        self.assert_caught(broken("                - !GetAtt ChallengesTable.Arn\n                - !If", "                - '*'\n                - !If"), "wildcard")

    def test_extra_action_is_caught(self):
        self.assert_caught(broken("Action: dynamodb:GetItem", "Action: [dynamodb:GetItem, dynamodb:Scan]"), "unexpected actions")

    def test_broader_action_is_caught(self):
        self.assert_caught(broken("Action: ses:SendEmail", "Action: ses:*"))

    def test_crud_policy_template_is_caught(self):
        self.assert_caught(
            broken("        - Version: \"2012-10-17\"", "        - DynamoDBCrudPolicy:\n            TableName: !Ref ChallengesTable\n        - Version: \"2012-10-17\"")
        )

    def test_missing_required_variable_is_caught(self):
        self.assert_caught(broken("          SENDER_EMAIL: !Ref SenderEmail\n", ""), "SENDER_EMAIL")

    def test_literal_secret_is_caught(self):
        self.assert_caught(
            broken('CODE_HMAC_SECRET: !Sub "{{resolve:secretsmanager:${HmacSecretId}:SecretString}}"', "CODE_HMAC_SECRET: not-a-secret-but-long-enough-to-pass-32"),
            "CODE_HMAC_SECRET",
        )


class NumericSettings(unittest.TestCase):
    def assert_caught(self, text: str, *words: str) -> None:
        CheckTemplate.assert_caught(self, text, *words)

    def test_each_new_variable_removed_is_caught(self):
        for variable in ("RESEND_COOLDOWN_SECONDS", "MAX_CODES_PER_USER", "USER_WINDOW_SECONDS", "RATE_LIMIT_IPV6_PREFIX"):
            with self.subTest(variable=variable):
                line = next(l for l in TEMPLATE.splitlines(keepends=True) if l.strip().startswith(variable + ":"))
                self.assert_caught(broken(line, ""), variable)

    def test_variable_fed_from_the_wrong_parameter_is_caught(self):
        self.assert_caught(broken("MAX_CODES_PER_USER: !Ref MaxCodesPerUser", "MAX_CODES_PER_USER: !Ref MaxCodesPerChallenge"), "MAX_CODES_PER_USER")

    def test_variable_set_to_a_literal_is_caught(self):
        self.assert_caught(broken("USER_WINDOW_SECONDS: !Ref UserWindowSeconds", 'USER_WINDOW_SECONDS: "3600"'), "USER_WINDOW_SECONDS")

    def test_missing_parameter_is_caught(self):
        text = without_block("  UserWindowSeconds:").replace("USER_WINDOW_SECONDS: !Ref UserWindowSeconds", 'USER_WINDOW_SECONDS: "3600"')
        self.assert_caught(text, "UserWindowSeconds")

    def test_cooldown_default_other_than_30_is_caught(self):
        self.assert_caught(broken_parameter("ResendCooldownSeconds", "Default: 30", "Default: 0"), "ResendCooldownSeconds")

    def test_per_user_budget_default_other_than_10_is_caught(self):
        self.assert_caught(broken_parameter("MaxCodesPerUser", "Default: 10", "Default: 100"), "MaxCodesPerUser")

    def test_cooldown_that_cannot_be_turned_off_is_caught(self):
        self.assert_caught(broken_parameter("ResendCooldownSeconds", "MinValue: 0", "MinValue: 1"), "ResendCooldownSeconds")

    def test_per_user_budget_that_cannot_be_turned_off_is_caught(self):
        self.assert_caught(broken_parameter("MaxCodesPerUser", "MinValue: 0", "MinValue: 1"), "MaxCodesPerUser")

    def test_zero_user_window_allowed_is_caught(self):
        self.assert_caught(broken_parameter("UserWindowSeconds", "MinValue: 1", "MinValue: 0"), "UserWindowSeconds")

    def test_ipv6_prefix_below_48_allowed_is_caught(self):
        self.assert_caught(broken_parameter("RateLimitIpv6Prefix", "MinValue: 48", "MinValue: 32"), "RateLimitIpv6Prefix")

    def test_ipv6_prefix_without_upper_bound_is_caught(self):
        self.assert_caught(broken_parameter("RateLimitIpv6Prefix", "\n    MaxValue: 128", ""), "RateLimitIpv6Prefix")

    def test_ipv6_prefix_128_refused_is_caught(self):
        self.assert_caught(broken_parameter("RateLimitIpv6Prefix", "MaxValue: 128", "MaxValue: 127"), "RateLimitIpv6Prefix")

    def test_upper_bound_where_none_belongs_is_caught(self):
        self.assert_caught(broken_parameter("MaxCodesPerUser", "MinValue: 0", "MinValue: 0\n    MaxValue: 100"), "MaxCodesPerUser")

    def test_string_parameter_is_caught(self):
        self.assert_caught(broken_parameter("UserWindowSeconds", "Type: Number", "Type: String"), "UserWindowSeconds")

    def test_existing_number_loosened_is_caught(self):
        self.assert_caught(broken_parameter("RateLimitMax", "MinValue: 1", "MinValue: 0"), "RateLimitMax")


class DeliveryTracking(unittest.TestCase):
    def assert_caught(self, text: str, *words: str) -> None:
        CheckTemplate.assert_caught(self, text, *words)

    def test_missing_event_type_is_caught(self):
        for event in ("send", "delivery", "bounce", "complaint", "reject", "deliveryDelay"):
            with self.subTest(event=event):
                types = [e for e in ("send", "delivery", "bounce", "complaint", "reject", "deliveryDelay") if e != event]
                text = broken(
                    "MatchingEventTypes: [send, delivery, bounce, complaint, reject, deliveryDelay]",
                    f"MatchingEventTypes: [{', '.join(types)}]",
                )
                self.assert_caught(text, f"event type {event} ")

    def test_event_type_in_the_api_v2_spelling_is_caught(self):
        self.assert_caught(broken("reject, deliveryDelay]", "reject, DELIVERY_DELAY]"), "deliveryDelay")

    def test_open_tracking_is_caught(self):
        self.assert_caught(broken("reject, deliveryDelay]", "reject, deliveryDelay, open]"), "open")

    def test_disabled_event_destination_is_caught(self):
        self.assert_caught(broken("code-delivery-metrics\n        Enabled: true\n", "code-delivery-metrics\n        Enabled: false\n"), "Enabled")

    def test_missing_purpose_dimension_is_caught(self):
        self.assert_caught(
            broken(
                "            - DimensionName: purpose\n"
                "              DimensionValueSource: messageTag\n"
                "              DefaultDimensionValue: none\n",
                "",
            ),
            "purpose dimension",
        )

    def test_purpose_dimension_from_a_header_is_caught(self):
        self.assert_caught(
            broken(
                "            - DimensionName: purpose\n              DimensionValueSource: messageTag",
                "            - DimensionName: purpose\n              DimensionValueSource: emailHeader",
            ),
            "purpose",
        )

    def test_missing_configuration_set_dimension_is_caught(self):
        self.assert_caught(
            broken(
                "            - DimensionName: ses:configuration-set\n"
                "              DimensionValueSource: messageTag\n"
                "              DefaultDimensionValue: none\n",
                "",
            ),
            "ses:configuration-set",
        )

    def test_event_destination_removed_is_caught(self):
        self.assert_caught(without_block("  DeliveryEvents:"), "event destination")

    def test_alarm_removed_is_caught(self):
        text = without_block("  DeliveryProblemsAlarm:")
        text = text.replace("  DeliveryAlarmName:\n    Condition: TrackDelivery\n    Value: !Ref DeliveryProblemsAlarm\n", "")
        self.assert_caught(text, "no alarm watches AWS/SES Bounce", "no alarm watches AWS/SES Complaint")

    def test_alarm_without_complaints_is_caught(self):
        self.assert_caught(broken("MetricName: Complaint", "MetricName: Reject"), "Complaint")

    def test_alarm_expression_ignoring_bounces_is_caught(self):
        self.assert_caught(broken("Expression: FILL(bounces, 0) + FILL(complaints, 0)", "Expression: FILL(complaints, 0)"), "Bounce")

    def test_alarm_on_another_purpose_is_caught(self):
        self.assert_caught(broken("Value: two-factor-email-code", "Value: two-factor-code", 1), "Bounce")

    def test_alarm_without_the_configuration_set_dimension_is_caught(self):
        self.assert_caught(
            broken(
                "                - Name: ses:configuration-set\n                  Value: !Ref DeliveryConfigurationSet\n",
                "",
                1,
            ),
            "Bounce",
        )

    def test_alarm_in_another_namespace_is_caught(self):
        self.assert_caught(broken("Namespace: AWS/SES", "Namespace: SendEmailCode"), "AWS/SES")

    def test_tracking_left_on_when_turned_off_is_caught(self):
        text = broken(
            "  DeliveryEvents:\n    Type: AWS::SES::ConfigurationSetEventDestination\n    Condition: TrackDelivery\n",
            "  DeliveryEvents:\n    Type: AWS::SES::ConfigurationSetEventDestination\n",
        )
        self.assert_caught(text, "EnableDeliveryTracking=false: the stack must not create ['DeliveryEvents']")

    def test_tracking_off_by_default_is_caught(self):
        self.assert_caught(broken_parameter("EnableDeliveryTracking", 'Default: "true"', 'Default: "false"'), "defaults:")

    def test_tracking_switch_removed_is_caught(self):
        text = broken('    - !Equals [!Ref EnableDeliveryTracking, "true"]\n', '    - !Equals ["true", "true"]\n')
        self.assert_caught(text, "EnableDeliveryTracking=false")

    def test_own_set_created_beside_the_operators_is_caught(self):
        text = broken(
            '  TrackDelivery: !And\n    - !Equals [!Ref EnableDeliveryTracking, "true"]\n    - !Not [!Condition HasConfigurationSet]\n',
            '  TrackDelivery: !Equals [!Ref EnableDeliveryTracking, "true"]\n',
        )
        self.assert_caught(text, "SesConfigurationSet given: the stack must not create")

    def test_function_not_sending_with_the_own_set_is_caught(self):
        text = broken('!If [TrackDelivery, !Ref DeliveryConfigurationSet, ""]', '""')
        self.assert_caught(text, "SES_CONFIGURATION_SET")

    def test_function_ignoring_the_operators_set_is_caught(self):
        text = broken(
            "          SES_CONFIGURATION_SET: !If\n            - HasConfigurationSet\n            - !Ref SesConfigurationSet\n",
            "          SES_CONFIGURATION_SET: !If\n            - HasConfigurationSet\n            - \"\"\n",
        )
        self.assert_caught(text, "SesConfigurationSet given: SES_CONFIGURATION_SET")

    def test_configuration_set_variable_removed_is_caught(self):
        start = TEMPLATE.index("          # The operator's set, else the stack's own")
        end = TEMPLATE.index("          CODE_HMAC_SECRET:")
        self.assert_caught(TEMPLATE[:start] + TEMPLATE[end:], "SES_CONFIGURATION_SET")

    def test_send_without_the_configuration_set_allowed_is_caught(self):
        text = broken(
            "                  - !If\n                    - TrackDelivery\n",
            "                  - !If\n                    - CreateUsersTable\n",
        )
        self.assert_caught(text, "ses:SendEmail must be on exactly")

    def test_any_configuration_set_allowed_is_caught(self):
        self.assert_caught(broken("configuration-set/${DeliveryConfigurationSet}", "configuration-set/*"), "wildcard")

    def test_extra_ses_action_is_caught(self):
        self.assert_caught(broken("Action: ses:SendEmail", "Action: [ses:SendEmail, ses:SendRawEmail]"), "ses:SendRawEmail")

    def test_separate_ses_statement_is_caught(self):
        self.assert_caught(
            broken(
                "            - Sid: SendAsTheIdentity\n",
                "            - Effect: Allow\n"
                "              Action: ses:GetMessageInsights\n"
                "              Resource: !Sub \"arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${SesIdentity}\"\n"
                "            - Sid: SendAsTheIdentity\n",
            ),
            "ses:GetMessageInsights",
        )

    def test_cloudwatch_permission_for_tracking_is_caught(self):
        self.assert_caught(
            broken(
                "            - Sid: SendAsTheIdentity\n",
                "            - Effect: Allow\n"
                "              Action: cloudwatch:PutMetricData\n"
                "              Resource: !GetAtt ChallengesTable.Arn\n"
                "            - Sid: SendAsTheIdentity\n",
            ),
            "cloudwatch:PutMetricData",
        )

    def test_source_without_the_purpose_tag_is_caught(self):
        found = problems(TEMPLATE, CONFIG, SOURCES.replace("two-factor-email-code", "login-code"))
        self.assertTrue(any("purpose=two-factor-email-code" in p for p in found), found)


class ManagedInstances(unittest.TestCase):
    def assert_caught(self, text: str, *words: str) -> None:
        CheckTemplate.assert_caught(self, text, *words)

    def test_provider_always_attached_is_caught(self):
        text = broken(
            "          PerExecutionEnvironmentMaxConcurrency: !Ref ManagedInstancesConcurrency\n        - !Ref AWS::NoValue\n",
            "          PerExecutionEnvironmentMaxConcurrency: !Ref ManagedInstancesConcurrency\n"
            "        - Arn: arn:aws:lambda:us-east-1:123456789012:capacity-provider:always\n",
        )
        self.assert_caught(text, "defaults: the function must be ordinary Lambda")

    def test_provider_created_by_default_is_caught(self):
        text = broken(
            "    Type: AWS::Serverless::CapacityProvider\n    Condition: CreateCapacityProvider\n",
            "    Type: AWS::Serverless::CapacityProvider\n",
        )
        self.assert_caught(text, "defaults: the function must be ordinary Lambda")

    def test_given_arn_ignored_is_caught(self):
        text = broken("            - !Ref CapacityProviderArn\n", "            - arn:aws:lambda:us-east-1:123456789012:capacity-provider:other\n")
        self.assert_caught(text, "CapacityProviderArn given: the function must run on")

    def test_own_provider_beside_a_given_arn_is_caught(self):
        text = broken(
            '    - !Not [!Equals [!Join [",", !Ref CapacityProviderSubnetIds], ""]]\n    - !Not [!Condition UseCapacityProviderArn]\n',
            '    - !Not [!Equals [!Join [",", !Ref CapacityProviderSubnetIds], ""]]\n    - !Not [!Equals ["a", "b"]]\n',
        )
        self.assert_caught(text, "CapacityProviderArn and subnets given: the stack must not create a capacity provider")

    def test_subnets_not_creating_a_provider_is_caught(self):
        text = broken("  CreateCapacityProvider: !And\n", "  CreateCapacityProvider: !And\n    - !Equals [!Ref DeletionProtection, maybe]\n")
        self.assert_caught(text, "CapacityProviderSubnetIds given: expected the stack to create one")

    def test_x86_instances_are_caught(self):
        self.assert_caught(broken("        Architectures: [arm64]\n", "        Architectures: [x86_64]\n"), "capacity provider's instances are ['x86_64']")

    def test_subnets_not_passed_on_are_caught(self):
        text = broken("[CreateCapacityProvider, !Ref CapacityProviderSubnetIds, [unused]]", "[CreateCapacityProvider, [subnet-0123456789abcdef0], [unused]]")
        self.assert_caught(text, "given subnets")

    def test_security_groups_not_passed_on_are_caught(self):
        self.assert_caught(broken("        SecurityGroupIds: !Ref CapacityProviderSecurityGroupIds\n", "        SecurityGroupIds: [sg-0123456789abcdef0, sg-0123456789abcdef1]\n"), "security groups")

    def test_placeholder_for_the_dropped_provider_removed_is_caught(self):
        # AWS::LanguageExtensions drops the Ref when the provider is not
        # created, and SAM then refuses the resource: the default stack breaks.
        text = broken("!If [CreateCapacityProvider, !Ref CapacityProviderSubnetIds, [unused]]", "!Ref CapacityProviderSubnetIds")
        self.assert_caught(text, "defaults: SAM translation failed", "SubnetIds")

    def test_language_extensions_not_declared_is_caught(self):
        text = broken("Transform:\n  - AWS::LanguageExtensions\n  - AWS::Serverless-2016-10-31\n", "Transform: AWS::Serverless-2016-10-31\n")
        self.assert_caught(text, "SAM translation failed", "CapacityProviderConfig")

    def test_language_extensions_after_sam_is_caught(self):
        text = broken("  - AWS::LanguageExtensions\n  - AWS::Serverless-2016-10-31\n", "  - AWS::Serverless-2016-10-31\n  - AWS::LanguageExtensions\n")
        self.assert_caught(text, "SAM translation failed")

    def test_on_demand_memory_on_managed_instances_is_caught(self):
        self.assert_caught(broken("MemorySize: !If [OnManagedInstances, 2048, 256]", "MemorySize: 256"), "CapacityProviderArn given: MemorySize is 256")

    def test_concurrency_not_from_its_parameter_is_caught(self):
        text = broken("PerExecutionEnvironmentMaxConcurrency: !Ref ManagedInstancesConcurrency", "PerExecutionEnvironmentMaxConcurrency: 64")
        self.assert_caught(text, "PerExecutionEnvironmentMaxConcurrency must be ManagedInstancesConcurrency")

    def test_concurrency_parameter_past_the_api_range_is_caught(self):
        self.assert_caught(broken_parameter("ManagedInstancesConcurrency", "MaxValue: 1600", "MaxValue: 5000"), "ManagedInstancesConcurrency")

    def test_other_timeout_on_managed_instances_is_caught(self):
        self.assert_caught(broken("      Timeout: 12\n", "      Timeout: !If [OnManagedInstances, 60, 12]\n"), "CapacityProviderArn given: Timeout")

    def test_more_permissions_on_managed_instances_is_caught(self):
        text = broken("              Action: dynamodb:GetItem\n", "              Action: !If [OnManagedInstances, [dynamodb:GetItem, dynamodb:Query], dynamodb:GetItem]\n")
        self.assert_caught(text, "the function's role differs from the on-demand one")


def broken_readme(old: str, new: str) -> str:
    assert README.count(old) >= 1, f"{old!r} not in README.md"
    return README.replace(old, new, 1)


class DeployPathDrift(unittest.TestCase):
    def assert_drift(self, template: str, readme: str, *words: str, script: str = TEST_SCRIPT) -> None:
        found = readme_problems(template, readme, script)
        self.assertTrue(found, "the drift check passed")
        joined = "\n".join(found)
        for word in words:
            self.assertIn(word, joined)

    def test_shipped_readme_matches(self):
        self.assertEqual(readme_problems(TEMPLATE, README, TEST_SCRIPT), [])

    def test_other_memory_in_the_readme_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("--memory 256 --timeout 12", "--memory 512 --timeout 12"), "--memory 512")

    def test_other_memory_in_the_template_is_caught(self):
        self.assert_drift(broken("MemorySize: !If [OnManagedInstances, 2048, 256]", "MemorySize: !If [OnManagedInstances, 2048, 512]"), README, "--memory 256", "512")

    def test_other_timeout_in_the_template_is_caught(self):
        self.assert_drift(broken("      Timeout: 12\n", "      Timeout: 15\n"), README, "--timeout 12", "15")

    def test_x86_build_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("cargo lambda build --release --arm64 --output-format zip   #", "cargo lambda build --release --output-format zip   #"), "x86_64")

    def test_x86_template_is_caught(self):
        self.assert_drift(broken("Architectures: [arm64]", "Architectures: [x86_64]"), README, "arm64")

    def test_other_runtime_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("--memory 256 --timeout 12 \\\n", "--memory 256 --timeout 12 --runtime provided.al2 \\\n"), "provided.al2")

    def test_other_binary_name_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("--binary-name bootstrap", "--binary-name send-email-code"), "--binary-name")

    def test_variable_missing_from_the_readme_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme(",TLS_SYSTEM_ROOTS=false \\\n", " \\\n"), "does not set TLS_SYSTEM_ROOTS")

    def test_variable_only_in_the_readme_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme(",TLS_SYSTEM_ROOTS=false", ",TLS_SYSTEM_ROOTS=false,LOG_LEVEL=debug"), "sets LOG_LEVEL")

    def test_variable_only_in_the_template_is_caught(self):
        text = broken("          TLS_SYSTEM_ROOTS: !Ref TlsSystemRoots\n", "          TLS_SYSTEM_ROOTS: !Ref TlsSystemRoots\n          TRUSTED_PROXY_HOPS: \"0\"\n")
        self.assert_drift(text, README, "does not set TRUSTED_PROXY_HOPS")

    def test_renamed_variable_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("RESEND_COOLDOWN_SECONDS=30", "RESEND_COOLDOWN=30"), "RESEND_COOLDOWN_SECONDS", "RESEND_COOLDOWN")

    def test_other_default_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("RESEND_COOLDOWN_SECONDS=30", "RESEND_COOLDOWN_SECONDS=0"), "RESEND_COOLDOWN_SECONDS=0", "30")

    def test_default_changed_in_the_template_is_caught(self):
        self.assert_drift(broken_parameter("MaxCodesPerUser", "Default: 10", "Default: 20"), README, "MAX_CODES_PER_USER=10", "20")

    def test_sam_command_missing_from_the_readme_is_caught(self):
        self.assert_drift(TEMPLATE, broken_readme("sam build --beta-features --build-in-source\nsam deploy", "sam build --beta-features\nsam deploy"), "sam build --beta-features --build-in-source")

    def test_sam_command_ci_runs_differently_is_caught(self):
        script = TEST_SCRIPT.replace('"sam build --beta-features --build-in-source"', '"sam build --beta-features --build-in-source --cached"', 1)
        self.assertNotEqual(script, TEST_SCRIPT)
        self.assert_drift(TEMPLATE, README, "--cached", script=script)


if __name__ == "__main__":
    unittest.main()
