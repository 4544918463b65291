//! Creating the three tables as docs/contract.md (section 5) describes them,
//! where template.yaml does not: DynamoDB Local, for the demo, the benchmark
//! and the tests. The function itself never creates a table.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;

/// Names of the three tables.
#[derive(Debug, Clone)]
pub struct TableNames {
    /// `CHALLENGES_TABLE`.
    pub challenges: String,
    /// `USERS_TABLE`.
    pub users: String,
    /// `RATE_LIMIT_TABLE`.
    pub rate_limits: String,
}

/// Creates the tables (skipping any that exist). TTL is deliberately not
/// enabled: DynamoDB Local deletes expired items within a second, which
/// would hide the expired-but-present challenges real DynamoDB keeps.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<(), String> {
    for (table, key) in [
        (&names.challenges, "challengeId"),
        (&names.users, "userId"),
        (&names.rate_limits, "pk"),
    ] {
        let result = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await;
        if let Err(err) = result {
            let exists = err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            if !exists {
                return Err(format!(
                    "creating table {table}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&err)
                ));
            }
        }
    }
    Ok(())
}
