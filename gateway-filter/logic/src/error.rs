//! Why a request's credentials were refused: the token contract's error, under the name
//! the filter's modules use. Its `Display` goes to the proxy log; its
//! `client_message` is what the 401 answer carries.

/// A bearer credential was missing or did not verify (see [`bulwark_token::TokenError`]).
pub use bulwark_token::TokenError as AuthError;
