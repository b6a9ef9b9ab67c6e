//! forja's durable state.
//!
//! [`Store`] is the seam, made of one trait per concern so that each
//! implementation file holds one concern: [`Tenants`] (tenants and API
//! keys), [`Examples`] (curated feedback and the triggers that claim it),
//! [`Files`], [`Jobs`] (the job lifecycle, leases, events, checkpoints),
//! [`Schedules`] (cron fires and webhook deliveries), [`Registry`] (golden
//! sets, model versions, aliases), [`CompletionLog`], [`Documents`]
//! (documents with lineage, the entity dictionary), [`Conversations`]
//! (chat history), [`Knowledge`] (knowledge base sources and passages), [`Memory`]
//! (entity facts), [`Tasks`] (scheduled tasks, their lease and runs, and
//! the maintenance they do), [`Governance`] (auditors, their signed votes, the
//! hash-chained ledger) and [`Federation`] (a hub's nodes, deltas, rounds). Every state
//! change is one transaction, so a process killed at any point leaves the
//! database at the state before or after it. [`SqlStore`] implements
//! them on SQLite, the embedded default (WAL mode, one file in the data
//! directory), and on Postgres (for replicas on many machines), with the
//! same statements: the SQL keeps to what both accept (row-value
//! comparisons, partial indexes, JSON in text columns, `RETURNING`).
//!
//! [`Artifacts`] keeps datasets, checkpoints and adapters in an
//! `object_store` (a local directory, or S3-compatible storage), addressed
//! by sha256 and verified on every read. [`events`] is the bus registry
//! moves are published on.
//!
//! Callers bring the traits into scope with `use forja_store::prelude::*`.

mod artifacts;
pub mod completions;
pub mod conversations;
mod db;
pub mod documents;
mod error;
pub mod events;
pub mod federation;
pub mod governance;
pub mod knowledge;
pub mod memory;
pub mod registry;
mod sql;
mod store;
pub mod tasks;
mod types;

pub use artifacts::{
    sha256_file, sha256_hex, valid_sha, ArtifactConfig, Artifacts, StoredArtifact,
};
pub use completions::{CompletionLog, CompletionRecord, LiveSignals};
pub use conversations::{
    Conversation, ConversationMessage, ConversationUpdate, Conversations, NewMessage,
};
pub use documents::{ChunkSource, DictionaryEntry, DocKind, DocumentRow, Documents};
pub use error::{Result, StoreError};
pub use events::{Event, EventBus, LocalBus};
pub use federation::{FedDelta, FedNode, FedRound, Federation, NewDelta};
pub use governance::{
    verify_ledger, vote_message, Auditor, Governance, LedgerEntry, LedgerHead, LedgerVerifier,
    NewVote, Settlement, Vote,
};
pub use knowledge::{
    FeedPoll, Knowledge, KnowledgeFeed, KnowledgeRemoval, KnowledgeSource, NewChunk, NewSource,
    StoredChunk,
};
pub use memory::{Fact, FactFilter, Forgotten, Memory, MemoryRejection, NewFact, Remembered, Slot};
pub use registry::{
    Alias, AliasMove, GoldenSetRow, ModelVersion, NewVersion, Registry, RegistryEntry,
    VersionStatus, CANDIDATE, CHAMPION,
};
pub use sql::{check_database, check_postgres, new_id, DbHealth, SqlStore, SqliteStore, NODE_KEY};
pub use store::{Examples, Files, Finish, Jobs, LeaseRef, Leased, Schedules, Store, Tenants};
pub use tasks::{Activity, TaskClaim, TaskRun, TaskState, Tasks};
pub use types::*;

/// The store traits, for `use forja_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        CompletionLog, Conversations, Documents, Examples, Federation, Files, Governance, Jobs,
        Knowledge, Memory, Registry, Schedules, Store, Tasks, Tenants,
    };
}
