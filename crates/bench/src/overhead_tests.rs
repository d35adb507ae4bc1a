//! The overhead report's arithmetic on synthetic cells.

use super::*;

#[test]
fn differences_pair_the_cells_of_a_round() {
    // 10 ticks per 1,000 calls = 100 µs per call; round 1 ran on a busier machine.
    let mut cells = Vec::new();
    for (round, base) in [(0, 30), (1, 50)] {
        for (concurrency, variant) in CONCURRENCY.iter().flat_map(|&c| [(c, 0), (c, 1), (c, 2)]) {
            let (calls, errors, seconds) = (1000, 0, 1.0);
            let (ticks, latencies) = (base + variant as u64, vec![1_000_000; 1000]);
            let c = Cell {
                variant,
                concurrency,
                round,
                calls,
                errors,
                seconds,
                ticks,
                latencies,
            };
            cells.push(c);
        }
    }
    let o = Overhead {
        cells,
        rounds: 2,
        seconds: 1.0,
        oauth_client: "dcr:x".into(),
        micro: None,
    };
    let d = o.diff(1, 0, 2).unwrap();
    assert_eq!((d.n, d.mean, d.min, d.max), (2, 20.0, 20.0, 20.0));
    assert_eq!(o.diff(8, 1, 2).unwrap().mean, 10.0);
    assert!(o.met());
    assert!(o.markdown().contains("| 1 | **+20.0 ± 0.0 (+20 … +20)** |"));
    assert_eq!(o.json()["summary"][0]["added"]["mean_us"], 20.0);
    assert_eq!(o.json()["verdict"], "met");
}
