//! Cost of the identity assertion added to every forwarded request (`x-taxgate-assertion`):
//! `Assertions::sign` as the pipeline calls it (claims from the identity headers, JWS encode,
//! header value), for both algorithms, next to the bare aws-lc-rs signature it contains and
//! ring's (the library it signed with until session 8).
//!
//! Run: `cargo bench -p taxgate-benches --bench assertion -j2`
//!
//! Last run (2026-12-01 20:18Z, quiet machine, criterion median over 3 s): sign EdDSA 8.36 µs,
//! sign ES256 14.1 µs; aws-lc-rs signature alone 7.61 / 13.6 µs, ring's 20.2 / 13.9 µs; ring
//! Ed25519 PKCS#8 parse 18.7 µs (avoided per request by parsing at start). Details:
//! benches/README.md.

#![allow(
    clippy::unwrap_used,
    reason = "bench fixtures: a failed setup should abort the bench loudly"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue};
use taxgate_gateway::assertion::{Algorithm, Assertions, Key};

fn identity() -> Vec<(HeaderName, HeaderValue)> {
    [
        ("x-taxgate-person", "140105199001011238"),
        ("x-taxgate-enterprise", "91140100MA0K123488"),
        ("x-taxgate-role", "tax_handler"),
        ("x-taxgate-entry", "enterprise"),
        ("x-taxgate-decision", "9f3c1a7be2d40000000002a1"),
    ]
    .into_iter()
    .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
    .collect()
}

fn bench(c: &mut Criterion) {
    let identity = identity();
    let version = "a".repeat(64);
    let mut group = c.benchmark_group("assertion");
    group.measurement_time(Duration::from_secs(3));
    for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
        let (key, _) = Key::generate(algorithm).unwrap();
        let assertions = Assertions::new(key, None, "taxgate", 60).unwrap();
        group.bench_function(format!("sign {algorithm}"), |b| {
            b.iter(|| {
                assertions
                    .sign(
                        black_box(&identity),
                        "9f3c1a7be2d40000000002a1",
                        &version,
                        "etax",
                        1_800_000_000,
                    )
                    .unwrap()
            })
        });
    }
    // The floor: the signature alone over a message of the same size (~560 bytes).
    let rng = ring::rand::SystemRandom::new();
    let message = vec![b'x'; 560];
    let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = ring::signature::Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
    group.bench_function("ring Ed25519 sign only", |b| {
        b.iter(|| ed.sign(black_box(&message)))
    });
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let ec = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let ec = ring::signature::EcdsaKeyPair::from_pkcs8(alg, ec.as_ref(), &rng).unwrap();
    group.bench_function("ring P-256 sign only", |b| {
        b.iter(|| ec.sign(&rng, black_box(&message)).unwrap())
    });
    let aws_rng = aws_lc_rs::rand::SystemRandom::new();
    let aed = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_rng).unwrap();
    let aed = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(aed.as_ref()).unwrap();
    group.bench_function("aws-lc-rs Ed25519 sign only", |b| {
        b.iter(|| aed.sign(black_box(&message)))
    });
    let aalg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let aec = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(aalg, &aws_rng).unwrap();
    let aec = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(aalg, aec.as_ref()).unwrap();
    group.bench_function("aws-lc-rs P-256 sign only", |b| {
        b.iter(|| aec.sign(&aws_rng, black_box(&message)).unwrap())
    });
    // What jsonwebtoken's own providers would pay per request: parsing the PKCS#8 key again.
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    group.bench_function("ring Ed25519 parse PKCS#8 (avoided per request)", |b| {
        b.iter(|| ring::signature::Ed25519KeyPair::from_pkcs8(black_box(der.as_ref())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
