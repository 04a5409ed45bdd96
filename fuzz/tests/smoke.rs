//! Keeps the fuzz targets from rotting on stable, without libFuzzer: every file of each target's
//! committed corpus (`corpus/<target>/`) and a few thousand pseudo-random inputs (mutations of
//! the corpus and plain noise) go through the same functions the fuzzer calls.

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("ids", taxgate_fuzz::ids),
    ("config", taxgate_fuzz::config),
    ("face_verify", taxgate_fuzz::face_verify),
    ("session_headers", taxgate_fuzz::session_headers),
    ("json_fields", taxgate_fuzz::json_fields),
    ("seed", taxgate_fuzz::seed),
    ("request_path", taxgate_fuzz::request_path),
];

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "empty corpus for {target}");
    out.sort();
    out
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                const SPICE: &[u8] = b"\xff;= \"\\{}[]0x-_";
                v.insert(i, SPICE[rng.below(SPICE.len())]);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let j = i + rng.below(v.len() - i);
                let chunk = v[i..j].to_vec();
                v.splice(j..j, chunk);
            }
            _ => v.truncate(rng.below(v.len() + 1)),
        }
    }
    v
}

#[test]
fn corpus_and_random_inputs_hold() {
    for (name, target) in TARGETS {
        let seeds = corpus(name);
        for s in &seeds {
            target(s);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for _ in 0..3000 {
            let input = if rng.below(4) == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                let s = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, s)
            };
            target(&input);
        }
    }
}
