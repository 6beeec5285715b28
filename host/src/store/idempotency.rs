//! Idempotency keys of write requests: claimed before the request runs, completed with its
//! response, and released when the request fails inside the server so that it can be retried.

use super::entity::idempotency_key;
use super::{Store, StoreError, now_ms};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use std::time::Duration;

/// How many times [`Store::claim_idempotency_key`] re-reads a key that another request
/// changed between its insert and its read, before it reports the key as in progress.
const CLAIM_ATTEMPTS: usize = 3;

/// A write request that carries an idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct IdempotentRequest<'a> {
    /// Name of the caller. Keys of different callers never collide.
    pub caller: &'a str,
    /// The key the client chose.
    pub key: &'a str,
    /// Hash of the method, path and body, which a retry must repeat.
    pub request_hash: &'a str,
}

/// How long claimed keys count, for [`Store::claim_idempotency_key`].
#[derive(Debug, Clone, Copy)]
pub struct KeyLifetime {
    /// Age after which a key is forgotten, whatever its state.
    pub expires_after: Duration,
    /// Age after which a key still in progress is taken to belong to a request that died with
    /// its process, so a retry runs the request again.
    pub abandoned_after: Duration,
}

/// A response kept for retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers as name and value.
    pub headers: Vec<(String, String)>,
    /// The body, or `None` when it was too large to keep.
    pub body: Option<Vec<u8>>,
}

/// Outcome of [`Store::claim_idempotency_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new, or expired, and now belongs to this request, which should run.
    Claimed,
    /// The same request finished before with this response.
    Completed(StoredResponse),
    /// The same request is still running.
    InProgress,
    /// The key was used for a different request.
    OtherRequest,
}

impl Store {
    /// Claims an idempotency key for a request, or reports why the request must not run.
    ///
    /// The first use of a key inserts it as in progress. A later use with the same request
    /// hash returns the stored response, or [`KeyClaim::InProgress`] while the first request
    /// runs. A later use with another hash returns [`KeyClaim::OtherRequest`]. A key older than
    /// `lifetime.expires_after` is taken over as new, and so is a key still in progress after
    /// `lifetime.abandoned_after` when the request is the same.
    pub async fn claim_idempotency_key(
        &self,
        request: &IdempotentRequest<'_>,
        lifetime: &KeyLifetime,
    ) -> Result<KeyClaim, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            if self.insert_key(request).await? {
                return Ok(KeyClaim::Claimed);
            }
            let Some(stored) = self.find_key(request).await? else {
                // Released or deleted between the insert and the read: try the insert again.
                continue;
            };
            let age = now_ms() - stored.created_at;
            let expired = age > millis(lifetime.expires_after);
            let same_request = stored.request_hash == request.request_hash;
            let abandoned = stored.response_status.is_none()
                && same_request
                && age > millis(lifetime.abandoned_after);
            if expired || abandoned {
                if self.take_over_key(request, &stored).await? {
                    return Ok(KeyClaim::Claimed);
                }
                continue;
            }
            return Ok(outcome_of(stored, same_request));
        }
        Ok(KeyClaim::InProgress)
    }

    /// Stores the response of the request that claimed a key, so retries get it.
    pub async fn complete_idempotency_key(
        &self,
        request: &IdempotentRequest<'_>,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let headers =
            serde_json::to_value(&response.headers).map_err(|source| StoreError::InvalidJson {
                document: format!("response headers of idempotency key `{}`", request.key),
                source,
            })?;
        idempotency_key::Entity::update_many()
            .col_expr(
                idempotency_key::Column::ResponseStatus,
                Expr::value(i32::from(response.status)),
            )
            .col_expr(
                idempotency_key::Column::ResponseHeaders,
                Expr::value(headers),
            )
            .col_expr(
                idempotency_key::Column::ResponseBody,
                Expr::value(response.body.clone()),
            )
            .col_expr(idempotency_key::Column::CompletedAt, Expr::value(now_ms()))
            .filter(claimed_by(request))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes a key that `request` claimed and has not completed, so the client can retry.
    pub async fn release_idempotency_key(
        &self,
        request: &IdempotentRequest<'_>,
    ) -> Result<(), StoreError> {
        idempotency_key::Entity::delete_many()
            .filter(claimed_by(request))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes every key first used before `before`, in milliseconds since the Unix epoch, and
    /// returns how many it deleted.
    pub async fn delete_idempotency_keys_before(&self, before: i64) -> Result<u64, StoreError> {
        let deleted = idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Inserts the key as in progress unless it exists, and returns whether it did.
    async fn insert_key(&self, request: &IdempotentRequest<'_>) -> Result<bool, StoreError> {
        let row = idempotency_key::ActiveModel {
            caller: Set(request.caller.to_owned()),
            key: Set(request.key.to_owned()),
            request_hash: Set(request.request_hash.to_owned()),
            response_status: Set(None),
            response_headers: Set(None),
            response_body: Set(None),
            created_at: Set(now_ms()),
            completed_at: Set(None),
        };
        let keep_existing = OnConflict::columns([
            idempotency_key::Column::Caller,
            idempotency_key::Column::Key,
        ])
        .do_nothing()
        .to_owned();
        let inserted = idempotency_key::Entity::insert(row)
            .on_conflict(keep_existing)
            .exec_without_returning(&self.db)
            .await?;
        Ok(inserted == 1)
    }

    async fn find_key(
        &self,
        request: &IdempotentRequest<'_>,
    ) -> Result<Option<idempotency_key::Model>, StoreError> {
        let id = (request.caller.to_owned(), request.key.to_owned());
        Ok(idempotency_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?)
    }

    /// Resets an expired or abandoned key to in progress for `request`, unless another request
    /// changed it since it was read as `stored`. Returns whether it did.
    async fn take_over_key(
        &self,
        request: &IdempotentRequest<'_>,
        stored: &idempotency_key::Model,
    ) -> Result<bool, StoreError> {
        let updated = idempotency_key::Entity::update_many()
            .col_expr(
                idempotency_key::Column::RequestHash,
                Expr::value(request.request_hash.to_owned()),
            )
            .col_expr(
                idempotency_key::Column::ResponseStatus,
                Expr::value(None::<i32>),
            )
            .col_expr(
                idempotency_key::Column::ResponseHeaders,
                Expr::value(None::<serde_json::Value>),
            )
            .col_expr(
                idempotency_key::Column::ResponseBody,
                Expr::value(None::<Vec<u8>>),
            )
            .col_expr(idempotency_key::Column::CreatedAt, Expr::value(now_ms()))
            .col_expr(
                idempotency_key::Column::CompletedAt,
                Expr::value(None::<i64>),
            )
            .filter(idempotency_key::Column::Caller.eq(request.caller))
            .filter(idempotency_key::Column::Key.eq(request.key))
            .filter(idempotency_key::Column::CreatedAt.eq(stored.created_at))
            .filter(idempotency_key::Column::RequestHash.eq(&stored.request_hash))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }
}

/// Matches the key of `request` while it is in progress for that request.
fn claimed_by(request: &IdempotentRequest<'_>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(idempotency_key::Column::Caller.eq(request.caller))
        .add(idempotency_key::Column::Key.eq(request.key))
        .add(idempotency_key::Column::RequestHash.eq(request.request_hash))
        .add(idempotency_key::Column::ResponseStatus.is_null())
}

/// Builds the claim outcome of a key that is neither expired nor abandoned.
fn outcome_of(stored: idempotency_key::Model, same_request: bool) -> KeyClaim {
    if !same_request {
        return KeyClaim::OtherRequest;
    }
    let Some(status) = stored.response_status else {
        return KeyClaim::InProgress;
    };
    let headers = stored
        .response_headers
        .and_then(|json| serde_json::from_value(json).ok())
        .unwrap_or_default();
    KeyClaim::Completed(StoredResponse {
        status: u16::try_from(status).unwrap_or(500),
        headers,
        body: stored.response_body,
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
