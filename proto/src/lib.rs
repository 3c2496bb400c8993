//! Protobuf contracts of the Learn Greek Easy services.
//!
//! Every `.proto` lives in this crate; services never run codegen themselves.
//! Packages are versioned (`learngreek.session.v1`, `learngreek.deck.v1`), and
//! [`FILE_DESCRIPTOR_SET`] feeds gRPC reflection.

/// `learngreek.session.v1`: accounts, login, refresh-token sessions, signing keys.
pub mod session {
    pub mod v1 {
        tonic::include_proto!("learngreek.session.v1");
    }
}

/// `learngreek.deck.v1`: decks, cards, study queue, reviews and progress.
pub mod deck {
    pub mod v1 {
        tonic::include_proto!("learngreek.deck.v1");
    }
}

/// The encoded `FileDescriptorSet` of every package above, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

/// Fully-qualified gRPC service name of the session service.
pub const SESSION_SERVICE_NAME: &str = "learngreek.session.v1.SessionService";
/// Fully-qualified gRPC service name of the deck service.
pub const DECK_SERVICE_NAME: &str = "learngreek.deck.v1.DeckService";
