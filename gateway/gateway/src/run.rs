//! A complete gateway from a config: the server with the gateway's own endpoints (login,
//! account centre, pages) wired in. `taxgate serve`, `taxgate demo` and the end-to-end tests
//! all start it this way.

use std::sync::Arc;

use crate::authn::login::Auth;
use crate::authn::sms;
use crate::config::Config;
use crate::endpoints::Own;
use crate::pipeline::Endpoints;
use crate::server::{Server, Shutdown, StartError};

/// Bind a fully wired gateway; call [`Server::run`] to serve.
pub async fn serve(config: Config, _shutdown: Shutdown) -> Result<Server, StartError> {
    let sms = sms::from_config(&config.sms).map_err(|message| StartError::Config {
        key: "sms".into(),
        message,
    })?;
    Server::bind_with(config, move |core| {
        let auth = Auth::new(core.clone(), sms);
        Arc::new(Own::new(core.clone(), auth)) as Arc<dyn Endpoints>
    })
    .await
}
