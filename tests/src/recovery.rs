//! Face verification (the app backend's signed callback) and the phone recovery flow built on
//! it.

use std::net::SocketAddr;

use http::{Request, StatusCode};

use crate::client::{Answer, assert_ok, full, send};
use crate::env::Env;
use crate::login::unix_now;

/// Headers of a face callback signed like the app backend does (CONTRACT section 6).
pub fn sign_face(secret: &str, timestamp: i64, body: &str) -> (String, String) {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    (
        timestamp.to_string(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )
}

/// The face secret every test config shares.
pub const FACE_SECRET: &str = "test-face-secret";

/// A face callback with `body`, signed with `secret` at `timestamp`, from the default client.
pub async fn face_callback_signed(
    addr: SocketAddr,
    secret: &str,
    timestamp: i64,
    body: &serde_json::Value,
) -> Answer {
    let body = body.to_string();
    let (ts, sig) = sign_face(secret, timestamp, &body);
    send(
        addr,
        Request::post("/auth/face/callback")
            .header("content-type", "application/json")
            .header("x-taxgate-timestamp", ts)
            .header("x-taxgate-signature", sig)
            .body(full(body))
            .unwrap(),
    )
    .await
}

impl Env {
    /// `/auth/face/start` on `challenge` (must answer 200), then the app's signed callback saying
    /// `result` for `id_number`; returns the callback's answer.
    pub async fn face_scan(&self, challenge: &str, id_number: &str, result: &str) -> Answer {
        let start = self.post_ok("/auth/face/start", challenge).await;
        let nonce = start.json()["nonce"].as_str().unwrap().to_string();
        face_callback_signed(
            self.gw.public,
            FACE_SECRET,
            unix_now(),
            &serde_json::json!({"nonce": nonce, "id_number": id_number, "result": result}),
        )
        .await
    }

    /// The new recovery flow (CONTRACT section 3) up to the code: `/auth/phone/recover`, a
    /// passing face scan of `id_number`, `/auth/face/complete`. Returns the challenge.
    pub async fn recover_until_code(
        &self,
        account: &str,
        password: &str,
        phone: &str,
        id_number: &str,
    ) -> String {
        let a = self
            .post(
                "/auth/phone/recover",
                serde_json::json!({"account": account, "password": password, "phone": phone}),
                None,
            )
            .await;
        assert_ok(&a, "recover");
        let challenge = a.json()["challenge"].as_str().unwrap().to_string();
        let cb = self.face_scan(&challenge, id_number, "pass").await;
        assert_eq!(cb.status, StatusCode::NO_CONTENT);
        self.post_ok("/auth/face/complete", &challenge).await;
        challenge
    }

    /// `POST path` with `{"challenge": challenge}` and no session, which must answer 200.
    async fn post_ok(&self, path: &str, challenge: &str) -> Answer {
        let a = self
            .post(path, serde_json::json!({"challenge": challenge}), None)
            .await;
        assert_ok(&a, path);
        a
    }

    /// Every `phone_changed` notice in the outbox, by recipient.
    pub fn phone_notices(&self) -> Vec<String> {
        self.sms()
            .iter()
            .filter(|m| m["purpose"] == "phone_changed")
            .map(|m| {
                assert!(m.get("code").is_none(), "a notice carries no code: {m}");
                m["to"].as_str().unwrap().to_string()
            })
            .collect()
    }
}
