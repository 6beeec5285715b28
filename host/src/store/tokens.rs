//! Bearer tokens of the HTTP API: created once, stored as SHA-256 hashes, revoked by name.

use super::entity::api_token;
use super::{Store, StoreError, now_ms};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, SqlErr,
};
use sha2::{Digest as _, Sha256};

/// Prefix of every token, so a leaked token is easy to recognise in a scan of source code.
pub const TOKEN_PREFIX: &str = "rlt_";

/// Random bytes per token: 256 bits cannot be guessed.
const TOKEN_BYTES: usize = 32;

/// Returns the lowercase hex SHA-256 of a token, the form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Generates a new random token.
fn generate_token() -> Result<String, StoreError> {
    let mut bytes = [0_u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| StoreError::Random(error.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

impl Store {
    /// Creates a token called `name` with `role` and returns its row and the token, which is
    /// not stored and cannot be shown again. A name already taken by a valid token returns
    /// [`StoreError::TokenNameTaken`].
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
    ) -> Result<(api_token::Model, String), StoreError> {
        if self.find_token_by_name(name).await?.is_some() {
            return Err(StoreError::TokenNameTaken(name.to_owned()));
        }
        let token = generate_token()?;
        let row = api_token::ActiveModel {
            name: Set(name.to_owned()),
            role: Set(role.to_owned()),
            token_hash: Set(hash_token(&token)),
            created_at: Set(now_ms()),
            revoked_at: Set(None),
            ..Default::default()
        };
        // Two concurrent creations with one name both pass the check above; the unique index
        // then rejects the second.
        let model = api_token::Entity::insert(row)
            .exec_with_returning(&self.db)
            .await
            .map_err(|error| match error.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => {
                    StoreError::TokenNameTaken(name.to_owned())
                }
                _ => StoreError::Database(error),
            })?;
        tracing::info!(token_name = %model.name, role = %model.role, "api token created");
        Ok((model, token))
    }

    /// Returns the valid token whose hash is `token_hash`, if any.
    pub async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<api_token::Model>, StoreError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(token_hash))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?)
    }

    /// Returns the token called `name`, revoked or not.
    pub async fn find_token_by_name(
        &self,
        name: &str,
    ) -> Result<Option<api_token::Model>, StoreError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::Name.eq(name))
            .one(&self.db)
            .await?)
    }

    /// Lists every token, valid and revoked, by name.
    pub async fn list_tokens(&self) -> Result<Vec<api_token::Model>, StoreError> {
        Ok(api_token::Entity::find()
            .order_by_asc(api_token::Column::Name)
            .all(&self.db)
            .await?)
    }

    /// Counts the tokens that have not been revoked.
    pub async fn count_valid_tokens(&self) -> Result<u64, StoreError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::RevokedAt.is_null())
            .count(&self.db)
            .await?)
    }

    /// Revokes the token called `name`. Returns [`StoreError::TokenNotFound`] if no valid token
    /// has that name.
    pub async fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        let result = api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Expr::value(now_ms()))
            .filter(api_token::Column::Name.eq(name))
            .filter(api_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::TokenNotFound(name.to_owned()));
        }
        tracing::info!(token_name = %name, "api token revoked");
        Ok(())
    }
}
