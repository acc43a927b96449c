//! Auth methods: they answer a login with a [`crate::engine::LoginSpec`] and the core mints the token.

pub mod jwt;
