//! [`Env`]: the usual test setup, an in-process gateway with the login fixtures imported, in
//! front of an echo upstream, with a client for it and its SMS outbox.

use std::path::PathBuf;

use http::Request;

use taxgate_store::import_seed;

use crate::client::{Answer, empty, post_json, send, with_session};
use crate::config::{config_text, config_text_with_store, sms_outbox};
use crate::gateway::Gateway;
use crate::login::{
    ENT_A, WANG, WANG_PW, login_body, login_sms_view_at, outbox_code, outbox_messages, seed_json,
    unix_now,
};
use crate::upstream::Upstream;

/// A gateway with the login fixtures imported, in front of a real upstream.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub gw: Gateway,
    pub up: Upstream,
}

impl Env {
    pub async fn start(extra_config: &str) -> Env {
        Self::start_with(extra_config, &seed_json()).await
    }

    pub async fn start_with(extra_config: &str, seed: &serde_json::Value) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let text = config_text(dir.path(), &up.url(), extra_config);
        Self::start_in(dir, up, &text, seed).await
    }

    /// [`Env::start`] on the store at `store_url` (PostgreSQL, or a relay in front of it); also
    /// returns the config text, for more instances on the same store.
    pub async fn start_on(store_url: &str) -> (Env, String) {
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let text = config_text_with_store(dir.path(), &up.url(), "", store_url);
        (Self::start_in(dir, up, &text, &seed_json()).await, text)
    }

    async fn start_in(
        dir: tempfile::TempDir,
        up: Upstream,
        text: &str,
        seed: &serde_json::Value,
    ) -> Env {
        let gw = Gateway::start(text, dir.path()).await;
        import_seed(&gw.core.store, &seed.to_string(), unix_now())
            .await
            .unwrap_or_else(|e| panic!("test seed refused: {e:?}"));
        Env { dir, gw, up }
    }

    pub fn outbox(&self) -> PathBuf {
        sms_outbox(self.dir.path())
    }

    /// Every line of the SMS outbox.
    pub fn sms(&self) -> Vec<serde_json::Value> {
        outbox_messages(&self.outbox())
    }

    /// The newest code sent to `phone`.
    pub fn last_code(&self, phone: &str) -> String {
        outbox_code(&self.outbox(), phone)
    }

    pub async fn post(&self, path: &str, body: serde_json::Value, session: Option<&str>) -> Answer {
        post_json(self.gw.public, path, body, session).await
    }

    pub async fn get(&self, path: &str, session: Option<&str>) -> Answer {
        let req = with_session(Request::get(path).header("host", "gw.test"), session);
        send(self.gw.public, req.body(empty()).unwrap()).await
    }

    /// `POST /auth/login`; returns the answer.
    pub async fn login(
        &self,
        entry: &str,
        taxpayer_id: Option<&str>,
        account: &str,
        password: &str,
    ) -> Answer {
        let body = login_body(entry, taxpayer_id, account, password);
        self.post("/auth/login", body, None).await
    }

    /// A full login with the SMS factor; returns the session token and the session view.
    pub async fn login_sms(
        &self,
        entry: &str,
        taxpayer_id: Option<&str>,
        account: &str,
        password: &str,
        phone: &str,
    ) -> (String, serde_json::Value) {
        let body = login_body(entry, taxpayer_id, account, password);
        login_sms_view_at(self.gw.public, &self.outbox(), body, phone).await
    }

    /// 王芳's SMS login into enterprise A, as its legal representative: the usual session of a
    /// test that needs one.
    pub async fn login_wang(&self) -> (String, serde_json::Value) {
        self.login_sms("enterprise", Some(ENT_A), WANG, WANG_PW, "13800138000")
            .await
    }
}
