use super::on_each_backend;
use crate::store::tokens::{TOKEN_PREFIX, hash_token};
use crate::store::{Store, StoreError};

#[tokio::test]
async fn tokens_are_stored_as_hashes() {
    on_each_backend(async |store: &Store| {
        let (row, token) = store.create_token("ci", "editor").await.expect("create");

        assert!(token.starts_with(TOKEN_PREFIX), "{token}");
        assert_eq!(row.token_hash, hash_token(&token));
        assert_ne!(row.token_hash, token);
        let found = store.find_token_by_hash(&hash_token(&token)).await.unwrap();
        assert_eq!(found.map(|row| row.name), Some("ci".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn concurrent_creations_of_one_name_keep_one() {
    on_each_backend(async |store: &Store| {
        let (first, second) = tokio::join!(
            store.create_token("twin", "viewer"),
            store.create_token("twin", "admin")
        );

        let outcomes = [first.is_ok(), second.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
        let error = first.err().or(second.err()).expect("one creation fails");
        assert!(
            matches!(error, StoreError::TokenNameTaken(ref name) if name == "twin"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn revoked_tokens_stop_matching() {
    on_each_backend(async |store: &Store| {
        let (_, token) = store.create_token("old", "viewer").await.expect("create");

        store.revoke_token("old").await.expect("revoke");

        let found = store.find_token_by_hash(&hash_token(&token)).await.unwrap();
        assert!(found.is_none());
        assert_eq!(store.count_valid_tokens().await.unwrap(), 0);
        let again = store.revoke_token("old").await.unwrap_err();
        assert!(matches!(again, StoreError::TokenNotFound(_)), "{again}");
    })
    .await;
}
