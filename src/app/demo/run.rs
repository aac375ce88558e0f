//! `hamstr demo`: the bundled restaurant API on loopback, its payment provider sending
//! id-only webhooks to hamstr's listener (and dropping some), and the demo pipeline
//! (`events.hmr` here: polls, events with `fetch`, a slow poll that reconciles)
//! collecting from both into the embedded store.

use crate::app::{load, run::summary, Error, Outcome};
use crate::runtime::{self, Options};
use crate::stop::Stop;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PIPELINE: &str = include_str!("events.hmr");
/// The callback of the pipeline's `exec` sink: prints each new order it is handed.
const ANNOUNCE: &str = include_str!("announce.sh");

/// Serves the demo API on `127.0.0.1:port` and runs the example pipeline against it,
/// until Ctrl-C or for `seconds`, keeping its data in `data_dir` (default: a fresh
/// temporary folder).
pub fn run(port: u16, data_dir: Option<PathBuf>, seconds: Option<u64>) -> Result<Outcome, Error> {
    crate::app::private_files();
    let io = |what: String| move |e: std::io::Error| Error::Io(format!("{what}: {e}"));
    let dir = match data_dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(io(format!("cannot create `{}`", d.display())))?;
            d
        }
        // A new folder with a random name, made exclusively (0700): a name another user
        // could guess, and have put a link at, would be written through.
        None => tempfile::Builder::new()
            .prefix("hamstr-demo-")
            .tempdir()
            .map_err(io(format!(
                "cannot make a folder in `{}`",
                std::env::temp_dir().display()
            )))?
            .keep(),
    };
    let pipeline_path = dir.join("restaurant_events.hmr");
    std::fs::write(&pipeline_path, PIPELINE)
        .map_err(io(format!("cannot write `{}`", pipeline_path.display())))?;
    write_script(&dir.join("announce.sh")).map_err(io("cannot write `announce.sh`".into()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the async runtime".into()))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| Error::Io(format!("cannot listen on 127.0.0.1:{port}: {e} (try --port)")))?;
        let addr = listener
            .local_addr()
            .map_err(io("cannot listen on 127.0.0.1".into()))?;
        // hamstr's listener, on a free port of loopback that the provider is told of.
        let hooks = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("cannot find a free port on 127.0.0.1".into()))?;
        let config = super::DemoConfig {
            webhook: Some(format!("http://{hooks}/hooks/payments")),
            ..super::DemoConfig::default()
        };
        tokio::spawn(super::serve(listener, config));
        let base = format!("http://{addr}");
        let env = move |k: &str| match k {
            "TILL_URL" => Some(format!("{base}/pos")),
            "PAY_URL" => Some(format!("{base}/pay")),
            "HAMSTR_LISTEN" => Some(hooks.to_string()),
            other => load::env(other),
        };
        let checked = crate::check::check(&pipeline_path.display().to_string(), PIPELINE, &env);
        let pipeline = checked
            .pipeline
            .ok_or_else(|| Error::Pipeline(checked.report.render(false, 100)))?;
        let store = load::open_store(&dir.join(".hamstr"))?;
        eprintln!("demo restaurant API on http://{addr}  (till: /pos/orders, payments: /pay/payments)");
        eprintln!("collecting with {} into {}", pipeline_path.display(), dir.display());
        eprintln!("new orders arrive every 2 seconds: the till's are polled every 30s; for each new payment the provider POSTs `id=...` to http://{hooks}/hooks/payments (one in four dropped on purpose), hamstr fetches the payment and stores it; the payments poll every minute collects the dropped ones. Each new order is handed to announce.sh (an exec sink), which prints it below. Ctrl-C to stop.\n");
        let stop = Stop::new();
        runtime::stop_on_signals_with(stop.clone(), seconds.map(Duration::from_secs));
        let opts = Options {
            once: false,
            base_dir: dir.clone(),
            ..Options::default()
        };
        let plan = crate::plan::Plan::new(&pipeline);
        let report = runtime::run(plan, store.clone(), opts, stop, None)
            .await
            .map_err(Error::RunFailed)?;
        eprintln!("\n{}", summary(&report));
        let stored = store.sink_len("orders")?;
        tell_where(&pipeline_path, &dir, stored);
        Ok(Outcome::Success)
    })
}

/// Writes the announce script, executable by its owner only.
fn write_script(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, ANNOUNCE)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// How to look at what the demo collected.
fn tell_where(pipeline_path: &Path, dir: &Path, stored: usize) {
    let data = dir.join(".hamstr");
    eprintln!("the store holds {stored} orders; look at them with:");
    eprintln!(
        "  hamstr dump {} orders --data-dir {}",
        pipeline_path.display(),
        data.display()
    );
    eprintln!(
        "  (the same records were appended to {})",
        dir.join("out/orders.jsonl").display()
    );
    eprintln!("and at the payments that arrived by webhook or poll, and any record it rejected:");
    eprintln!(
        "  hamstr dump {} online_orders --data-dir {}",
        pipeline_path.display(),
        data.display()
    );
    eprintln!(
        "  hamstr dump {} till_orders --rejected --data-dir {}",
        pipeline_path.display(),
        data.display()
    );
}
