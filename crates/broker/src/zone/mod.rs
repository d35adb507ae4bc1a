//! Keycard zone client: RFC 8414 discovery, RFC 7591 registration, PKCE authorize rounds,
//! code / refresh / RFC 8693 exchange grants and RFC 7009 revocation.
//!
//! Errors are classified exactly as PROTOCOL.md §1 says, so the grant state machine can tell
//! "the user must act" (permanent) from "try again later" (transient).

mod client;
mod error;
mod http;
#[cfg(test)]
mod tests;
mod wire;

pub use client::{Zone, http_client};
pub use error::ZoneError;
pub use wire::{
    AuthorizeRequest, ClientIdentity, IdClaims, Metadata, Registration, TokenSet, ZoneExtraFields,
    decode_id_claims, parse_metadata, parse_token_response, rejection, same_issuer, split_scopes,
};
