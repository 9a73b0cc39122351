//! Plain records passed across the storage boundary.

use glucosync_domain::accounts::{Email, Scope};
use glucosync_domain::settings::UserSettings;

pub type UserId = i64;
pub type CredentialId = i64;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    pub settings: UserSettings,
    pub created_ms: i64,
    /// Set while the account awaits deletion (docs/data-ownership.md): it is deleted, with
    /// everything it has, at this time unless its owner cancels.
    pub deletion_due_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminGrant {
    Yes,
    No,
    /// Admin exactly when this is the first account (SPEC: the first account is an admin).
    IfFirst,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: String,
    pub admin: AdminGrant,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A login session (browser cookie or the token returned by login).
    Session,
    /// A personal API token with chosen scopes (uploaders, scripts).
    ApiToken,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::ApiToken => "api_token",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(CredentialKind::Session),
            "api_token" => Some(CredentialKind::ApiToken),
            _ => None,
        }
    }
}

/// A credential as stored: only hashes of its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub id: CredentialId,
    pub user_id: UserId,
    pub kind: CredentialKind,
    pub name: String,
    pub token_hash: String,
    /// Sessions only: hash of the CSRF token that unsafe cookie-authenticated requests echo.
    pub csrf_hash: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    pub expires_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewCredential {
    pub user_id: UserId,
    pub kind: CredentialKind,
    pub name: String,
    pub token_hash: String,
    pub csrf_hash: Option<String>,
    pub scopes: Vec<Scope>,
    pub now_ms: i64,
    pub expires_ms: Option<i64>,
}

/// What an idempotent upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub duplicates: u64,
}

/// A page of a time-ordered listing: `from_ms <= time < to_ms`, ordered by (time, key),
/// starting after `after` when given.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub after: Option<Cursor>,
    pub limit: usize,
    pub descending: bool,
}

/// Position in a listing: the last item's time and key (reading id or treatment id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time_ms: i64,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub applied_migration: i64,
    pub latest_migration: i64,
}

impl Readiness {
    pub fn migrations_applied(&self) -> bool {
        self.applied_migration >= self.latest_migration
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open (readers and writers).
    pub connections: u64,
    /// Connections busy with a query right now.
    pub in_use: u64,
    /// Writes waiting for the writer.
    pub queued_writes: u64,
}

/// A forecast as stored: issued from the CGM reading at `issued_ms` (data time). The points
/// are the server's compact encoding; the store keeps them opaque.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredForecast {
    pub issued_ms: i64,
    pub model_version: String,
    pub created_ms: i64,
    pub points: Vec<u8>,
}

/// A person's alerts as stored, with what the evaluator needs to find the people it must look
/// at: `version` grows with every upload of CGM readings and every settings change (in their
/// own transactions), `evaluated_version` is the version last evaluated, and `due_ms` is when
/// the clock alone next matters (data going stale, a snooze ending). A person is due for
/// evaluation when `version > evaluated_version` or `due_ms <= now`. `book_version` grows with
/// every change of the book, and is what saves compare: an upload arriving during an
/// evaluation does not void that evaluation's save (it only leaves the person due).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertRecord {
    pub book: glucosync_domain::alerts::AlertBook,
    pub version: i64,
    pub evaluated_version: i64,
    pub book_version: i64,
    pub due_ms: Option<i64>,
}

impl AlertRecord {
    /// The basis of a book computed by evaluating this record's data.
    pub fn evaluation(&self) -> BookBasis {
        BookBasis {
            book_version: self.book_version,
            evaluated_version: Some(self.version),
        }
    }

    /// The basis of a book changed without evaluating data (an acknowledgement).
    pub fn edit(&self) -> BookBasis {
        BookBasis {
            book_version: self.book_version,
            evaluated_version: None,
        }
    }

    /// What recording an evaluation that left this record's book as it was says.
    pub fn unchanged(&self, user_id: crate::UserId, due_ms: Option<i64>) -> Evaluation {
        Evaluation {
            user_id,
            version: self.version,
            book_version: self.book_version,
            due_ms,
        }
    }
}

/// What a new alert book is computed from (see [`AlertRecord`]): the book version it replaces
/// (0: none saved yet), and the version of the data it evaluated (`None`: it evaluated none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookBasis {
    pub book_version: i64,
    pub evaluated_version: Option<i64>,
}

/// An evaluation that changed nothing: the data version it evaluated, over which book, and
/// the next due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub user_id: crate::UserId,
    pub version: i64,
    pub book_version: i64,
    pub due_ms: Option<i64>,
}

/// A person's fitted forecast model, by version. `trained_until_ms` is the data time of the
/// newest row it was fitted on; the body is the model as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    pub version: String,
    pub trained_until_ms: i64,
    pub created_ms: i64,
    pub body_json: String,
}

/// What a follower may see of the person who shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRole {
    /// Live data, alerts, forecasts and reports (parents, partners).
    Caregiver,
    /// Reports only.
    Clinician,
}

impl ShareRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareRole::Caregiver => "caregiver",
            ShareRole::Clinician => "clinician",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "caregiver" => Some(ShareRole::Caregiver),
            "clinician" => Some(ShareRole::Clinician),
            _ => None,
        }
    }
}

/// A share of one person's data with a follower: an invite until accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub id: i64,
    pub owner_id: UserId,
    /// Set when the invite is accepted.
    pub follower_id: Option<UserId>,
    pub role: ShareRole,
    /// Whom the invite was sent to.
    pub invite_email: String,
    pub created_ms: i64,
    /// The invite's expiry (an accepted share does not expire).
    pub expires_ms: i64,
    pub accepted_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// How the follower wants to hear of the person's alerts (they choose).
    pub notify_push: bool,
    pub notify_email: bool,
}

impl Share {
    /// Accepted and not revoked: the follower may read.
    pub fn is_active(&self) -> bool {
        self.follower_id.is_some() && self.revoked_ms.is_none()
    }
}

/// A browser's or phone's Web Push subscription (RFC 8030): where to send, and the keys to
/// encrypt for (base64url, as the browser gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: i64,
    pub user_id: UserId,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryChannel {
    Push,
    Email,
}

impl DeliveryChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryChannel::Push => "push",
            DeliveryChannel::Email => "email",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "push" => Some(DeliveryChannel::Push),
            "email" => Some(DeliveryChannel::Email),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not sent yet, or to be tried again at `next_attempt_ms`.
    Pending,
    Sent,
    /// Refused for good (or out of attempts).
    Failed,
    /// The subscription no longer exists (404/410 from the push service): it was removed.
    Expired,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "sent" => Some(DeliveryStatus::Sent),
            "failed" => Some(DeliveryStatus::Failed),
            "expired" => Some(DeliveryStatus::Expired),
            _ => None,
        }
    }
}

/// A notification to send, written with the alert change it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub recipient_id: UserId,
    pub channel: DeliveryChannel,
    /// The push subscription's id, or the email address.
    pub target: String,
    /// What to send (JSON; the channel renders it).
    pub payload: String,
}

/// A notification and what became of it: the outbox and the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    /// Whose alert it announces.
    pub person_id: UserId,
    pub recipient_id: UserId,
    pub channel: DeliveryChannel,
    pub target: String,
    pub payload: String,
    pub created_ms: i64,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub done_ms: Option<i64>,
}

/// What an attempt to deliver came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    Retry {
        at_ms: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    /// The push subscription is gone; it is deleted with this.
    Expired {
        error: String,
    },
}

impl DeliveryOutcome {
    /// The status, next attempt time and error an outcome leaves on its delivery (whose
    /// next attempt was `next_attempt_ms`).
    pub fn columns(&self, next_attempt_ms: i64) -> (DeliveryStatus, i64, Option<String>) {
        match self {
            DeliveryOutcome::Sent => (DeliveryStatus::Sent, next_attempt_ms, None),
            DeliveryOutcome::Retry { at_ms, error } => {
                (DeliveryStatus::Pending, *at_ms, Some(error.clone()))
            }
            DeliveryOutcome::Failed { error } => {
                (DeliveryStatus::Failed, next_attempt_ms, Some(error.clone()))
            }
            DeliveryOutcome::Expired { error } => (
                DeliveryStatus::Expired,
                next_attempt_ms,
                Some(error.clone()),
            ),
        }
    }
}

/// Which pending deliveries to claim: those of the alert-timer shards a replica holds, or
/// one person's (sent right after the change that wrote them).
#[derive(Debug, Clone, Copy)]
pub enum DeliveryScope<'a> {
    Shards { count: u32, held: &'a [u32] },
    Person(UserId),
}

/// One read of a person's health data by a follower, as the person sees it in their access
/// log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub id: i64,
    pub time_ms: i64,
    pub follower_id: UserId,
    /// The follower's account email.
    pub follower_email: String,
    /// What was read, e.g. `reports.summary`, `readings`, `forecast`.
    pub what: String,
}

/// An invite to create: only the hash of its single-use token is stored.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub owner_id: UserId,
    pub role: ShareRole,
    pub invite_email: String,
    pub token_hash: String,
    pub now_ms: i64,
    pub expires_ms: i64,
}

/// A person's Nightscout-compatible site (docs/nightscout.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightscoutSite {
    pub user_id: UserId,
    /// Lower-case; the site answers under `/ns/<handle>`.
    pub handle: String,
    /// Hex SHA-256 of the lower-case hex SHA-1 of the API secret. Uploaders send that SHA-1
    /// in `api-secret`, which makes it a credential: only its hash is stored.
    pub secret_hash: String,
    /// The API secret sealed with the installation's key (the server opens it for settings).
    pub secret_sealed: String,
    /// Whether anonymous requests may read the site (off by default, unlike Nightscout).
    pub public_read: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Where one element of a Nightscout upload ended up: the id of the stored record (the one
/// already stored, for a duplicate), in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredId {
    pub id: String,
    pub inserted: bool,
}

/// A Nightscout collection kept as documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentCollection {
    DeviceStatus,
    Profile,
    Food,
    Settings,
    /// Entries that are not glucose readings (calibrations, ...).
    OtherEntries,
    /// Tombstones of deleted readings (by their Nightscout `_id`, 24 hex digits) and
    /// treatments (by id), through any API, which Nightscout API v3's history reports.
    DeletedEntries,
    DeletedTreatments,
}

impl DocumentCollection {
    pub const ALL: [DocumentCollection; 7] = [
        DocumentCollection::DeviceStatus,
        DocumentCollection::Profile,
        DocumentCollection::Food,
        DocumentCollection::Settings,
        DocumentCollection::OtherEntries,
        DocumentCollection::DeletedEntries,
        DocumentCollection::DeletedTreatments,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentCollection::DeviceStatus => "devicestatus",
            DocumentCollection::Profile => "profile",
            DocumentCollection::Food => "food",
            DocumentCollection::Settings => "settings",
            DocumentCollection::OtherEntries => "entries",
            DocumentCollection::DeletedEntries => "deleted_entries",
            DocumentCollection::DeletedTreatments => "deleted_treatments",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A document to store; one with an id the collection already has is a duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    pub id: String,
    pub time_ms: i64,
    /// A JSON object.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub time_ms: i64,
    pub body: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub deleted: bool,
}

/// When a person's data last changed, by the server's clock (see `Store::last_changes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastChanges {
    pub readings: Option<i64>,
    pub treatments: Option<i64>,
    pub documents: Vec<(DocumentCollection, i64)>,
}
