//! `hamstr demo`: the bundled restaurant API on loopback, and `examples/restaurant.hmr`
//! collecting from it into the embedded store.

use crate::commands;
use crate::runtime::{self, Options};
use crate::stop::Stop;
use std::path::PathBuf;
use std::time::Duration;

const PIPELINE: &str = include_str!("../examples/restaurant.hmr");

pub fn demo(port: u16, data_dir: Option<PathBuf>, seconds: Option<u64>) -> Result<(), String> {
    let dir = match data_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("hamstr-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let pipeline_path = dir.join("restaurant.hmr");
    std::fs::write(&pipeline_path, PIPELINE).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (try --port)"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(crate::demo::serve(listener, crate::demo::DemoConfig::default()));
        let base = format!("http://{addr}");
        let env = move |k: &str| match k {
            "POS_URL" => Some(format!("{base}/pos")),
            "PAY_URL" => Some(format!("{base}/pay")),
            other => std::env::var(other).ok(),
        };
        let checked = crate::check::check(&pipeline_path.display().to_string(), PIPELINE, &env);
        let pipeline = checked.pipeline.ok_or_else(|| checked.report.render(false, 100))?;
        let store = commands::open_store(&dir.join(".hamstr"))?;
        eprintln!("demo restaurant API on http://{addr}  (till: /pos/orders, payments: /pay/payments)");
        eprintln!("collecting with examples/restaurant.hmr into {}", dir.display());
        eprintln!("new orders arrive every 2 seconds; shop orders are polled every 30s, payments every minute. Ctrl-C to stop.\n");
        let stop = Stop::new();
        runtime::stop_on_signals_with(stop.clone(), seconds.map(Duration::from_secs));
        let report = runtime::run(crate::plan::Plan::new(&pipeline), store.clone(), Options { once: false, base_dir: dir.clone() }, stop, None).await?;
        eprintln!("\n{}", commands::summary(&report));
        let stored = store.sink_len("orders").map_err(|e| e.to_string())?;
        eprintln!("the store holds {stored} orders; look at them with:");
        eprintln!("  hamstr dump {} orders --data-dir {}", pipeline_path.display(), dir.join(".hamstr").display());
        eprintln!("  (the same records were appended to {})", dir.join("out/orders.jsonl").display());
        eprintln!("and at the till orders it rejected (their currency is missing), with the reason:");
        eprintln!("  hamstr dump {} shop_orders --rejected --data-dir {}", pipeline_path.display(), dir.join(".hamstr").display());
        Ok(())
    })
}
