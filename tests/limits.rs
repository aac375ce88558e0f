//! Resource bounds: a thousand sources of one service share its rate limit and its
//! concurrency limit; a stalled sink stops the fetching (bounded channels) instead of
//! piling pages up in memory.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::cli::hamstr_process;
use support::{records, Fault, Paging, RunningHamstr, TestApi};

fn pipeline(url: &str, service_extra: &str, sources: usize, sink: &str) -> String {
    let mut text =
        format!("service api {{\n  base_url = \"{url}\"\n  {service_extra}\n}}\n{sink}\n");
    for i in 0..sources {
        text.push_str(&format!(
            "source s{i} from api {{\n  get = \"/items\"\n  schedule = once\n  records = $.data[*]\n  key = id\n  fields {{ id : string = $.id }}\n}}\nflow s{i} -> out\n"
        ));
    }
    text
}

fn run_once(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hmr");
    std::fs::write(&file, text).unwrap();
    Command::new(assert_cmd::cargo::cargo_bin("hamstr"))
        .args(["run", "--once", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(&file)
        .env("RUST_LOG", "hamstr=warn")
        .output()
        .unwrap()
}

#[test]
fn a_thousand_sources_share_one_rate_limit() {
    let api = TestApi::start_blocking();
    api.serve("/items", Paging::wrapped("data"));
    api.set_records("/items", records::make(1));
    let out = run_once(&pipeline(
        &api.url(),
        "rate_limit = 400/s",
        1000,
        "sink out = sled(\"items\")",
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let times: Vec<_> = api.requests_to("/items").iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 1000);
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    // 1,000 requests at 400 per second cannot take less than about 2.5 s.
    assert!(
        spread >= Duration::from_millis(2_300),
        "1,000 requests in {spread:?}"
    );
}

#[test]
fn sources_share_the_concurrency_limit() {
    let api = TestApi::start_blocking();
    api.serve("/items", Paging::wrapped("data"));
    api.set_records("/items", records::make(1));
    api.fail_always("/items", Fault::Delay(Duration::from_millis(200)));
    let out = run_once(&pipeline(
        &api.url(),
        "concurrency = 2",
        30,
        "sink out = sled(\"items\")",
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut times: Vec<_> = api.requests_to("/items").iter().map(|r| r.at).collect();
    times.sort();
    assert_eq!(times.len(), 30);
    // With two in flight and 200 ms each, any three arrivals span at least ~200 ms.
    for w in times.windows(3) {
        assert!(
            w[2] - w[0] >= Duration::from_millis(180),
            "three requests within {:?}",
            w[2] - w[0]
        );
    }
}

#[test]
fn a_stalled_sink_stops_the_fetching() {
    let api = TestApi::start_blocking();
    api.serve("/big", Paging::page(200));
    api.set_records("/big", records::make(20_000));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hmr");
    let text = format!(
        "service api {{ base_url = \"{}\" }}\nsource big from api {{\n  get = \"/big\"\n  schedule = once\n  paginate = page(param = \"page\", size_param = \"per_page\", size = 200)\n  records = $.data[*]\n  key = id\n  fields {{ id : string = $.id  name : string = $.name  nested : json = $.nested }}\n}}\nsink out = stdout()\nflow big -> out\n",
        api.url()
    );
    std::fs::write(&file, text).unwrap();
    // Nobody reads its standard output: the stdout sink stalls once the pipe is full.
    let mut run = hamstr_process();
    run.args(["run", "--no-watch", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(&file)
        .stdout(Stdio::piped());
    let mut child = RunningHamstr::start(run);
    // Wait for the fetching to stop: the same number of requests for 1.5 s. "Stopped"
    // means nothing happens for a while, so here time must pass between looks.
    let (mut last, mut steady) = (usize::MAX, 0);
    let mut rss = Vec::new();
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(500));
        let hits = api.hits("/big");
        steady = if hits == last { steady + 1 } else { 0 };
        last = hits;
        rss.extend(rss_kib(child.id()));
        if steady >= 3 {
            break;
        }
    }
    // Let it finish by reading what it wrote, then stop it.
    let mut stdout = child.take_stdout();
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
    });
    child.kill();
    let _ = reader.join();
    assert!(
        steady >= 3,
        "it kept fetching into a stalled sink ({last} pages)"
    );
    assert!(
        last < 30,
        "{last} of 100 pages fetched ahead of a stalled sink"
    );
    if let (Some(a), Some(b)) = (rss.get(rss.len().saturating_sub(4)), rss.last()) {
        assert!(
            *b < a + 10 * 1024,
            "memory grew from {a} KiB to {b} KiB while stalled"
        );
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
