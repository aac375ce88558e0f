//! Reload latency: `hamstr run` on a pipeline of N sources (1,000 by default, and a tenth
//! of that for comparison); one source's schedule is edited and the time from the write
//! to the "reloaded" line is measured. Beyond the debounce and the linear parse and
//! check of the file, nothing may grow with the number of unchanged sources.
//!
//! `cargo build --release && cargo bench --bench reload` (HAMSTR_BIN overrides the binary).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn pipeline(url: &str, n: usize, changed_every: &str) -> String {
    let mut text = format!("service api {{ base_url = \"{url}\" }}\nsink store = sled(\"rows\")\n");
    for i in 0..n {
        let every = if i == 0 { changed_every } else { "1h" };
        text.push_str(&format!(
            "source s{i} from api {{\n  get = \"/health\"\n  schedule = every({every})\n  records = $\n  paginate = none\n  key = ok\n  fields {{\n    ok : bool = $.ok\n    n : int = $.shop_orders\n  }}\n}}\nflow s{i} -> store\n"
        ));
    }
    text
}

fn measure(bin: &str, url: &str, n: usize, rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let dir = std::env::temp_dir().join(format!("hamstr-reload-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.hmr");
    std::fs::write(&file, pipeline(url, n, "30m")).unwrap();
    let mut child = Command::new(bin)
        .args(["run", "--data-dir"])
        .arg(dir.join("data"))
        .arg(&file)
        .env("RUST_LOG", "hamstr=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hamstr");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    // Wait until every source ran once.
    let mut ran = 0;
    while ran < n {
        let (_, line) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("sources to run");
        if line.contains("run finished") {
            ran += 1;
        }
    }
    let (mut total, mut apply) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let every = if round % 2 == 0 { "20m" } else { "30m" };
        let text = pipeline(url, n, every);
        let tmp = dir.join("p.tmp");
        std::fs::write(&tmp, text).unwrap();
        let written = Instant::now();
        std::fs::rename(&tmp, &file).unwrap();
        loop {
            let (at, line) = rx.recv_timeout(Duration::from_secs(60)).expect("a reload");
            if line.contains("INFO reloaded:") {
                let took: f64 = line
                    .rsplit("took_ms=")
                    .next()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(f64::NAN);
                total.push(at.duration_since(written).as_secs_f64() * 1000.0);
                apply.push(took);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    (total, apply)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bin = std::env::var("HAMSTR_BIN").unwrap_or_else(|_| "target/release/hamstr".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    rt.spawn(hamstr::app::demo::serve(
        listener,
        hamstr::app::demo::DemoConfig {
            new_order_every: None,
            ..Default::default()
        },
    ));
    let rounds = 7;
    println!("reload latency: one source's schedule edited, {rounds} rounds, median");
    println!(
        "{:>8} {:>14} {:>14}",
        "sources", "write→running", "apply only"
    );
    let mut rows = Vec::new();
    for n in [100, 1000] {
        let (total, apply) = measure(&bin, &url, n, rounds);
        let (t, a) = (median(total), median(apply));
        println!("{n:>8} {t:>11.1} ms {a:>11.1} ms");
        rows.push((n, t, a));
    }
    println!(
        "debounce {} ms; the rest (read, parse, check, diff, apply) grows {:.1}x for 10x the sources",
        hamstr::watch::DEBOUNCE.as_millis(),
        (rows[1].1 - hamstr::watch::DEBOUNCE.as_millis() as f64) / (rows[0].1 - hamstr::watch::DEBOUNCE.as_millis() as f64)
    );
}
