//! Deleting an account (docs/data-ownership.md): asked for by its owner, it cuts every way in
//! at once (sessions, tokens, shares, the Nightscout site, push), waits out the configured
//! grace period, during which logging in again and cancelling keeps everything, and then
//! deletes the account with all its data. A background job on any replica (under a lease)
//! carries out the deletions that are due.

use std::time::Duration;

use glucosync_store::{StoreError, UserId};

use crate::state::{now_ms, AppState};

const DAY_MS: i64 = 86_400_000;
const LEASE: &str = "account-deletions";
const LEASE_TTL_MS: i64 = 5 * 60_000;
const EVERY: Duration = Duration::from_secs(60);

/// Schedules `person`'s deletion after the grace period (or deletes at once without one);
/// returns when it is due.
pub async fn request_deletion(state: &AppState, person: UserId) -> Result<i64, StoreError> {
    let now = now_ms();
    let due = now + i64::from(state.config.account_deletion_grace_days) * DAY_MS;
    // Followers watching live are told before the shares go.
    let followers: Vec<UserId> = state
        .store
        .shares_of_owner(person)
        .await?
        .iter()
        .filter(|s| s.is_active())
        .filter_map(|s| s.follower_id)
        .collect();
    let revoked = state.store.request_deletion(person, due, now).await?;
    crate::auth::forget_credentials(state, person, &revoked).await;
    for follower in followers {
        crate::live::publish(state, follower, &[crate::live::share_revoked_event(person)]).await;
    }
    state.forecaster.forget_history(person);
    if due <= now {
        state.store.delete_account(person).await?;
    }
    tracing::info!(user_id = person, "account deletion requested");
    Ok(due)
}

/// Deletes the accounts whose grace period is over. Returns how many.
pub async fn delete_due_accounts(state: &AppState) -> Result<usize, StoreError> {
    let due = state.store.deletions_due(now_ms()).await?;
    for person in &due {
        state.store.delete_account(*person).await?;
        state.forecaster.forget_history(*person);
        tracing::info!(user_id = person, "account deleted");
    }
    Ok(due.len())
}

/// Runs [`delete_due_accounts`] every minute on whichever replica holds the lease.
pub async fn run_deletions(state: AppState, holder: String) {
    let mut stopping = state.stopping.subscribe();
    loop {
        let now = now_ms();
        match state
            .store
            .try_lease(LEASE, &holder, LEASE_TTL_MS, now)
            .await
        {
            Ok(true) => {
                if let Err(e) = delete_due_accounts(&state).await {
                    tracing::warn!(error = %e, "account deletions failed; retrying");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "account deletion lease unavailable"),
        }
        let stopped = tokio::select! {
            _ = tokio::time::sleep(EVERY) => false,
            r = stopping.wait_for(|s| *s) => r.is_ok(),
        };
        if stopped {
            // Another replica (or the next start) takes over at once.
            let _ = state.store.release_lease(LEASE, &holder).await;
            return;
        }
    }
}
