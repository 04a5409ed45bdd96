//! Support for the end-to-end tests: a real upstream (hyper) that reports what it received, the
//! real gateway started in-process or as the real binary on `127.0.0.1:0`, an HTTP client, and
//! test certificates.
//!
//! The modules are private; everything a test uses is re-exported here, so tests import
//! `taxgate_e2e::*` and never a module path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod burst;
mod client;
mod collector;
mod config;
mod env;
mod ext_peers;
mod faults;
mod gateway;
mod login;
mod recovery;
mod tls;
mod upstream;

pub use burst::{BurstAnswer, BurstRequest, burst, count_answers};
pub use client::{
    Answer, BoxError, SendError, TestBody, assert_status, empty, full, get, get_unread, read, send,
    try_send,
};
pub use collector::{Collector, ExportedSpan};
pub use config::{
    config_text, config_text_with_store, config_with_watched_policies, copy_dir, policies_dir,
    test_identity_section,
};
pub use env::Env;
pub use ext_peers::{Peer, free_port, start_caddy, start_nginx};
pub use faults::{
    Relay, eventually, pg_addr, pg_url_via, raw_exchange, raw_statuses, test_postgres_url,
};
pub use gateway::{Gateway, ServeChild, migrate_and_import, taxgate_bin};
pub use login::{
    AGENCY, CHEN, CHEN_PW, ENT_A, ENT_A_LEGACY_PW, ENT_B, LI, LI_PW, SUN, SUN_PW, WANG, WANG_PW,
    ZHANG, ZHANG_PW, ZHAO, ZHOU, ZHOU_PW, login_sms_at, login_sms_view_at, outbox_code, seed_json,
    session_token, unix_now,
};
pub use recovery::{FACE_SECRET, face_callback_signed, sign_face};
pub use tls::{TestCa, TestPki, send_h2_over, send_h2_tls, test_pki, tls_server_config};
pub use upstream::{Seen, TlsErrors, Upstream, drain_seen};
