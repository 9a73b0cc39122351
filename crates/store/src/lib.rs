//! The storage trait of GlucoSync and the conformance suite that every backend must pass.
//!
//! This crate owns the *contract* of persistence: which operations exist, what they promise
//! (idempotent uploads, tenancy by `user_id` in every query, durability once a call returns
//! `Ok`), and the typed errors they fail with. It must never depend on a particular database
//! driver; backends live in their own crates and are chosen by URL at startup.

pub mod columns;
pub mod conformance;
mod types;

pub use types::*;

use async_trait::async_trait;
use glucosync_domain::analytics::GlucosePoint;
use glucosync_domain::readings::{NewReading, Reading};
use glucosync_domain::settings::UserSettings;
use glucosync_domain::treatments::{NewTreatment, Treatment};

/// Why a storage call failed. Mapped to HTTP in exactly one place (the server's error module).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. the email is taken). The text names the rule.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is shutting down; the caller may retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data. Never shown verbatim to clients.
    #[error("storage error: {0}")]
    Internal(String),
}

/// Where an account's rows are: (table, column holding the account's id). Deleting an
/// account deletes every row these name (each backend's tests check that no table with an
/// account column is missing). Other people's access logs keep the reads the account made
/// (`access_log.follower_id`): they are the other person's record.
pub const ACCOUNT_ROWS: &[(&str, &str)] = &[
    ("readings", "user_id"),
    ("treatments", "user_id"),
    ("nightscout_documents", "user_id"),
    ("nightscout_sites", "user_id"),
    ("forecasts", "user_id"),
    ("forecast_models", "user_id"),
    ("alert_books", "user_id"),
    ("push_subscriptions", "user_id"),
    ("identities", "user_id"),
    ("credentials", "user_id"),
    ("deliveries", "person_id"),
    ("deliveries", "recipient_id"),
    ("shares", "owner_id"),
    ("shares", "follower_id"),
    ("access_log", "owner_id"),
];

/// Column names that hold an account's id, wherever they appear.
pub const ACCOUNT_COLUMN_NAMES: &[&str] = &[
    "user_id",
    "owner_id",
    "follower_id",
    "person_id",
    "recipient_id",
];

/// Panics unless every (table, column) found in a backend's schema with an account column
/// is deleted with the account, except the reads an account made in another person's access
/// log. For the backends' tests.
pub fn check_account_rows(found: &[(String, String)]) {
    for (table, column) in found {
        let known = ACCOUNT_ROWS.contains(&(table.as_str(), column.as_str()))
            || (table == "access_log" && column == "follower_id");
        assert!(
            known,
            "{table}.{column} names an account but account deletion does not know it: add it \
             to ACCOUNT_ROWS"
        );
    }
    for (table, column) in ACCOUNT_ROWS {
        assert!(
            found.iter().any(|(t, c)| t == table && c == column),
            "ACCOUNT_ROWS names {table}.{column}, which the schema does not have"
        );
    }
}

/// Persistence for everything GlucoSync keeps. Every per-user method takes the owner's id and
/// every implementation must filter by it: this is where tenancy is enforced last.
///
/// A method that returns `Ok` for a write has made that write durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite`, `postgres`, ...: for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations. Idempotent.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Whether the database answers and every migration this binary knows is applied.
    async fn readiness(&self) -> Result<Readiness, StoreError>;
    /// Connection pool figures for the metrics endpoint.
    fn pool_stats(&self) -> PoolStats;
    /// Finishes queued writes and releases the database. Later calls fail with `Unavailable`.
    async fn close(&self);

    // ---- users
    /// Creates a user. With [`AdminGrant::IfFirst`] the user becomes an admin exactly when no
    /// other user exists, decided atomically. A taken email gives `Conflict`.
    async fn create_user(&self, new: NewUser) -> Result<User, StoreError>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// The user with this (normalised) email and their password hash, for login.
    async fn user_by_email(&self, email: &str) -> Result<Option<(User, String)>, StoreError>;
    async fn password_hash(&self, id: UserId) -> Result<Option<String>, StoreError>;
    /// Sets a new password hash and revokes every session except `keep_session`; returns the
    /// token hashes revoked, so caches can forget them.
    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        keep_session: Option<CredentialId>,
    ) -> Result<Vec<String>, StoreError>;
    async fn set_display_name(&self, id: UserId, name: Option<&str>) -> Result<(), StoreError>;
    async fn set_settings(&self, id: UserId, settings: &UserSettings) -> Result<(), StoreError>;
    async fn set_admin(&self, id: UserId, admin: bool) -> Result<bool, StoreError>;
    /// Links a single sign-on identity (the provider's issuer and the person's subject there)
    /// to an account. Linking it again to the same account is no change; an identity linked
    /// to another account is a `Conflict`.
    async fn link_identity(
        &self,
        user_id: UserId,
        issuer: &str,
        subject: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The account a single sign-on identity is linked to.
    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError>;
    /// Disables or re-enables a user; disabling revokes every credential (hashes returned).
    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<Vec<String>, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    /// Accounts with an id above `after_id`, by id, at most `limit` (for operator jobs that
    /// visit every account, such as `glucoengine export --all`).
    async fn list_users(&self, after_id: UserId, limit: usize) -> Result<Vec<User>, StoreError>;

    // ---- account deletion (docs/data-ownership.md)
    /// Schedules the account's deletion at `due_ms` and, in the same transaction, cuts every
    /// way in: its credentials are revoked (their hashes are returned, for the caches), its
    /// shares (both ways) revoked, its Nightscout site and push subscriptions removed. The
    /// owner can still log in to cancel; no one else sees the data from now on.
    async fn request_deletion(
        &self,
        id: UserId,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Cancels a scheduled deletion; false when none was scheduled.
    async fn cancel_deletion(&self, id: UserId) -> Result<bool, StoreError>;
    /// Accounts whose deletion is due at `now_ms`.
    async fn deletions_due(&self, now_ms: i64) -> Result<Vec<UserId>, StoreError>;
    /// Deletes the account and everything of it, in one transaction: its readings,
    /// treatments, documents, forecasts, alerts, deliveries, shares, credentials, identities.
    /// Other people's access logs keep the reads it made, as reads by a deleted account.
    /// False when there was no such account.
    async fn delete_account(&self, id: UserId) -> Result<bool, StoreError>;

    // ---- credentials (browser sessions and personal API tokens)
    async fn create_credential(&self, new: NewCredential) -> Result<Credential, StoreError>;
    /// The live (not revoked, not expired at `now_ms`) credential with this token hash and its
    /// user. Disabled users' credentials are returned too; the caller refuses them.
    async fn credential_by_hash(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(Credential, User)>, StoreError>;
    async fn touch_credential(&self, id: CredentialId, now_ms: i64) -> Result<(), StoreError>;
    /// Live API tokens of a user, newest first.
    async fn list_api_tokens(
        &self,
        user_id: UserId,
        now_ms: i64,
    ) -> Result<Vec<Credential>, StoreError>;
    /// Revokes one credential of this user; returns its token hash if it existed and was live.
    async fn revoke_credential(
        &self,
        user_id: UserId,
        id: CredentialId,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError>;

    // ---- readings (an upload of CGM readings also makes the uploader due for alert
    // evaluation, in the same transaction: see [`AlertRecord`])
    /// Stores readings; those whose (kind, time, device) the user already has are counted as
    /// duplicates and change nothing. All or nothing.
    async fn insert_readings(
        &self,
        user_id: UserId,
        readings: Vec<NewReading>,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError>;
    async fn list_readings(
        &self,
        user_id: UserId,
        query: &RangeQuery,
    ) -> Result<Vec<Reading>, StoreError>;
    /// The CGM values with `from_ms <= time < to_ms`, in time order: all the analytics need,
    /// read without building full readings.
    async fn cgm_values(
        &self,
        user_id: UserId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<GlucosePoint>, StoreError>;
    /// The `n` newest readings, newest first.
    async fn latest_readings(&self, user_id: UserId, n: usize) -> Result<Vec<Reading>, StoreError>;
    /// Deletes a reading, leaving a tombstone (see [`DocumentCollection::DeletedEntries`]) in
    /// the same transaction.
    async fn delete_reading(&self, user_id: UserId, id: i64) -> Result<bool, StoreError>;
    /// Deletes readings with `from_ms <= time < to_ms`, with their tombstones; returns how
    /// many.
    async fn delete_readings_in_range(
        &self,
        user_id: UserId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, StoreError>;

    // ---- treatments
    /// Stores treatments; an id the user already has is a duplicate and changes nothing.
    async fn insert_treatments(
        &self,
        user_id: UserId,
        treatments: Vec<NewTreatment>,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError>;
    async fn list_treatments(
        &self,
        user_id: UserId,
        query: &RangeQuery,
    ) -> Result<Vec<Treatment>, StoreError>;
    async fn treatment(&self, user_id: UserId, id: &str) -> Result<Option<Treatment>, StoreError>;
    /// Replaces the time and content of an existing treatment (its id stays).
    async fn update_treatment(
        &self,
        user_id: UserId,
        treatment: NewTreatment,
        now_ms: i64,
    ) -> Result<Option<Treatment>, StoreError>;
    /// Deletes a treatment, leaving a tombstone (see
    /// [`DocumentCollection::DeletedTreatments`]) in the same transaction.
    async fn delete_treatment(&self, user_id: UserId, id: &str) -> Result<bool, StoreError>;

    // ---- forecasts (derived data: recomputable from readings and treatments)
    /// Stores forecasts, each for its user, in one transaction; one issued from the same
    /// reading time replaces the earlier (within a batch, the later item wins). Returns once
    /// they are durable; a backend may hold them briefly to share another write's commit
    /// (derived data: SQLite commits them with the next upload, or after 100 ms). Shared with
    /// the server's own copy of the latest forecasts, not copied for the store.
    async fn save_forecasts(
        &self,
        forecasts: Vec<(UserId, std::sync::Arc<StoredForecast>)>,
    ) -> Result<(), StoreError>;
    /// The forecast issued from the newest reading, whatever its age.
    async fn latest_forecast(&self, user_id: UserId) -> Result<Option<StoredForecast>, StoreError>;
    /// Stores a fitted model; the same version replaces it.
    async fn save_model(&self, user_id: UserId, model: &StoredModel) -> Result<(), StoreError>;
    /// The model fitted on the newest data.
    async fn latest_model(&self, user_id: UserId) -> Result<Option<StoredModel>, StoreError>;

    // ---- sharing (a person's data with followers)
    async fn create_invite(&self, invite: NewInvite) -> Result<Share, StoreError>;
    /// Accepts the invite with this token hash for `follower`: single use, before it expires,
    /// unless revoked. `None` when no such live invite exists; `Conflict` when the follower is
    /// the owner or already follows them.
    async fn accept_invite(
        &self,
        token_hash: &str,
        follower: UserId,
        now_ms: i64,
    ) -> Result<Option<Share>, StoreError>;
    /// Every share and invite of an owner, newest first.
    async fn shares_of_owner(&self, owner: UserId) -> Result<Vec<Share>, StoreError>;
    /// The active shares a follower has, newest first.
    async fn shares_followed(&self, follower: UserId) -> Result<Vec<Share>, StoreError>;
    /// The active share of `owner` with `follower`, if any: the authorization check.
    async fn active_share(
        &self,
        owner: UserId,
        follower: UserId,
    ) -> Result<Option<Share>, StoreError>;
    /// Revokes a share or invite of this owner; false if there was none live.
    async fn revoke_share(&self, owner: UserId, id: i64, now_ms: i64) -> Result<bool, StoreError>;

    // ---- alerts (the durable state of each person's alerts, and who must evaluate them)
    /// The person's alert record; the default (version 0) when there is none yet.
    async fn alert_record(&self, user_id: UserId) -> Result<AlertRecord, StoreError>;
    /// Replaces the book if the stored book version is still `basis.book_version` (0: none
    /// saved yet; the record may not exist), and queues `deliveries` (due at `now_ms`), in one
    /// transaction; the book version grows by one, and the data version the book evaluated
    /// counts as evaluated (never going back). False when the book changed first (re-read and
    /// evaluate again); then nothing is queued.
    async fn save_alert_book(
        &self,
        user_id: UserId,
        basis: BookBasis,
        book: &glucosync_domain::alerts::AlertBook,
        due_ms: Option<i64>,
        deliveries: &[NewDelivery],
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Records evaluations that changed nothing: marks each one's data version evaluated and
    /// sets its due time, unless the data or the book moved on meanwhile.
    async fn mark_alerts_evaluated(&self, evaluated: &[Evaluation]) -> Result<(), StoreError>;
    /// People due for evaluation at `now_ms` (see [`AlertRecord`]) among those whose id
    /// modulo `shard_count` is in `shards`, at most `limit`.
    async fn alerts_due(
        &self,
        now_ms: i64,
        shard_count: u32,
        shards: &[u32],
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError>;
    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`, unless another
    /// holder's lease is still running. Says whether `holder` holds it now.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Gives a lease up (at shutdown), if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    // ---- notifications (Web Push subscriptions, the outbox and delivery log)
    /// Adds a subscription, or renews the keys of the same endpoint.
    async fn add_push_subscription(
        &self,
        user_id: UserId,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        now_ms: i64,
    ) -> Result<PushSubscription, StoreError>;
    async fn push_subscriptions(
        &self,
        user_id: UserId,
    ) -> Result<Vec<PushSubscription>, StoreError>;
    async fn delete_push_subscription(&self, user_id: UserId, id: i64) -> Result<bool, StoreError>;
    /// Takes up to `limit` pending deliveries due at `now_ms` in `scope` for this caller:
    /// each is counted as an attempt and not due again until `now_ms + hold_ms`, so another
    /// replica does not send it meanwhile.
    async fn claim_deliveries(
        &self,
        scope: DeliveryScope<'_>,
        now_ms: i64,
        hold_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records an attempt's outcome (an expired push subscription is deleted with it).
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The delivery log of a person's alerts, newest first, before (created, id).
    async fn deliveries_of(
        &self,
        person_id: UserId,
        before: (i64, i64),
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// The follower sets how they hear of `owner`'s alerts; false without an active share.
    async fn set_follow_channels(
        &self,
        owner: UserId,
        follower: UserId,
        push: bool,
        email: bool,
    ) -> Result<bool, StoreError>;
    /// The installation's secret `name`, set to `candidate` if it has none yet (atomically:
    /// replicas starting together agree on one).
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError>;

    // ---- Nightscout compatibility (docs/nightscout.md)
    async fn nightscout_site(&self, user_id: UserId) -> Result<Option<NightscoutSite>, StoreError>;
    /// Creates the person's site unless they have one, atomically; returns the site they have
    /// now. A handle or secret another person's site has is a `Conflict`.
    async fn create_nightscout_site(
        &self,
        site: &NightscoutSite,
    ) -> Result<NightscoutSite, StoreError>;
    async fn nightscout_site_by_handle(
        &self,
        handle: &str,
    ) -> Result<Option<NightscoutSite>, StoreError>;
    async fn nightscout_site_by_secret(
        &self,
        secret_hash: &str,
    ) -> Result<Option<NightscoutSite>, StoreError>;
    /// Replaces the secret and the public-read switch of the person's site; false when they
    /// have none.
    async fn update_nightscout_site(&self, site: &NightscoutSite) -> Result<bool, StoreError>;
    /// Stores Nightscout entries that are readings. Nightscout's rule decides duplicates: a
    /// reading of the same kind at the same time, whatever the device. Answers every
    /// element's stored id, in request order. All or nothing.
    async fn insert_entries(
        &self,
        user_id: UserId,
        readings: Vec<NewReading>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError>;
    /// Stores Nightscout treatments: one whose id the person has, or with the same time, kind
    /// and `eventType` (in `extra`; none matches any) as one they have, is a duplicate. Answers every element's stored id, in request
    /// order. All or nothing.
    async fn insert_nightscout_treatments(
        &self,
        user_id: UserId,
        treatments: Vec<NewTreatment>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError>;
    /// Stores documents; an id the collection has (deleted or not) is a duplicate and
    /// changes nothing. Ids in request order. All or nothing.
    async fn insert_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        documents: Vec<NewDocument>,
        now_ms: i64,
    ) -> Result<Vec<StoredId>, StoreError>;
    /// Replaces a document's time and body (and undeletes it), or creates it; stamps the
    /// modification time.
    async fn put_document(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        document: NewDocument,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Documents not deleted with `from_ms <= time < to_ms`, a page at a time.
    async fn list_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        query: &RangeQuery,
    ) -> Result<Vec<Document>, StoreError>;
    async fn document(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        id: &str,
    ) -> Result<Option<Document>, StoreError>;
    /// Documents (deleted ones too) modified at or after `since_ms`, oldest modification
    /// first, at most `limit`: API v3's history.
    async fn documents_modified_since(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError>;
    /// Marks documents deleted (tombstones stay for history); returns how many were live.
    async fn delete_documents(
        &self,
        user_id: UserId,
        collection: DocumentCollection,
        ids: &[String],
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// One reading of the person's, by id.
    async fn reading(&self, user_id: UserId, id: i64) -> Result<Option<Reading>, StoreError>;
    /// Readings stored (by the server's clock, `created_ms`) at or after `since_ms`, in the
    /// order they were stored: what Nightscout API v3's history of entries reports.
    async fn readings_stored_since(
        &self,
        user_id: UserId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError>;
    /// Treatments created or changed at or after `since_ms` (`updated_ms`), oldest change
    /// first.
    async fn treatments_changed_since(
        &self,
        user_id: UserId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<Treatment>, StoreError>;
    /// The server time of the person's latest change of readings, treatments and each
    /// document collection (deletions included): API v3's `lastModified`.
    async fn last_changes(&self, user_id: UserId) -> Result<LastChanges, StoreError>;

    // ---- the access log (every follower read of a person's health data)
    /// Records that `follower` read `what` of `owner`'s data at `time_ms`. Durable before the
    /// data is returned.
    async fn record_access(
        &self,
        owner: UserId,
        follower: UserId,
        what: &str,
        time_ms: i64,
    ) -> Result<(), StoreError>;
    /// The owner's access log before `before` (time, id), newest first, at most `limit`
    /// entries.
    async fn access_log(
        &self,
        owner: UserId,
        before: (i64, i64),
        limit: usize,
    ) -> Result<Vec<AccessRecord>, StoreError>;
}
