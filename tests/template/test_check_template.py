"""Proves scripts/check_template.py catches broken templates: each test breaks
the real template.yaml in one way and expects the check to object."""

import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from check_template import problems  # noqa: E402

TEMPLATE = (ROOT / "template.yaml").read_text()
CONFIG = (ROOT / "src" / "config.rs").read_text()


def broken(old: str, new: str, count: int = 1) -> str:
    assert TEMPLATE.count(old) >= 1, f"{old!r} not in template.yaml"
    return TEMPLATE.replace(old, new, count)


class CheckTemplate(unittest.TestCase):
    def assert_caught(self, text: str, *words: str) -> None:
        found = problems(text, CONFIG)
        self.assertTrue(found, "the check passed a broken template")
        joined = "\n".join(found)
        for word in words:
            self.assertIn(word, joined)

    def test_shipped_template_passes(self):
        self.assertEqual(problems(TEMPLATE, CONFIG), [])

    def test_ref_to_a_missing_resource_is_caught(self):
        self.assert_caught(broken("CHALLENGES_TABLE: !Ref ChallengesTable", "CHALLENGES_TABLE: !Ref ChallengeTable"))

    def test_getatt_on_a_missing_resource_is_caught(self):
        self.assert_caught(broken("- !GetAtt RateLimitTable.Arn", "- !GetAtt RateLimitsTable.Arn"))

    def test_wrong_architecture_is_caught(self):
        self.assert_caught(broken("Architectures: [arm64]", "Architectures: [x86_64]"), "Architectures")

    def test_misspelled_property_is_caught(self):
        self.assert_caught(broken("MemorySize: 256", "MemorySise: 256"))

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


if __name__ == "__main__":
    unittest.main()
