//! `hamstr try FILE SOURCE`: the page inspector (spec §16). Runs one source for a few
//! pages — its requests watched through a [`Tape`], its items extracted by the run's own
//! [`Extractor`] — and shows what a run would do with them, without a data directory
//! or a sink: the requests (secrets masked), answers and times, the records and
//! rejections, the paginator's next request, and fields that are null in every item.

mod flags;
mod render;
mod report;

use super::{load, Console, Error, Outcome};
use crate::check::{Pipeline, Source};
use crate::masking::Masker;
use crate::nodes::auth::TokenHome;
use crate::nodes::extract::Extractor;
use crate::nodes::source::http::ServiceClient;
use crate::nodes::source::paginate::Next;
use crate::nodes::source::Listing;
use crate::nodes::tape::Tape;
use crate::nodes::value::write_record_raw;
use crate::stop::Stop;
use report::{NextRequest, PageTrial, ParentTrial, Rejected, Trial, Triggered};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// How `try` prints what it saw.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryFormat {
    /// Tables for a person, fitting the terminal's width.
    Human,
    /// One JSON object on stdout.
    Json,
}

/// What `try` was asked.
#[derive(Debug, Clone)]
pub struct TryArgs {
    pub source: String,
    pub pages: u64,
    pub tenant: Option<String>,
    pub format: TryFormat,
    /// The data directory a run of the pipeline uses: its rotated OAuth2 refresh
    /// tokens are the ones to use and to keep (a rotation `try` caused and did not keep
    /// would leave the next run with a revoked token).
    pub data_dir: Option<std::path::PathBuf>,
}

/// The records of a page shown in full (the table; the JSON keeps more).
const SHOWN_RECORDS: usize = 10;
/// The records of a page the JSON output keeps.
const JSON_RECORDS: usize = 50;
/// The parent records whose requests a child source shows.
const PARENT_RECORDS: usize = 5;

/// The unit `try` runs: `SOURCE[TENANT]` with `--tenant`. A source that runs per
/// tenant needs one, and a tenant it does not run for is named with those it does.
fn unit_of(
    p: &crate::check::Pipeline,
    source: &str,
    tenant: Option<&str>,
) -> Result<String, Error> {
    let prefix = format!("{source}[");
    let tenants: Vec<&str> = p
        .sources
        .values()
        .filter(|s| s.name.starts_with(&prefix))
        .filter_map(|s| s.tenant.as_deref())
        .collect();
    let listed = || {
        let mut shown: Vec<String> = tenants.iter().take(10).map(|t| format!("`{t}`")).collect();
        if tenants.len() > 10 {
            shown.push(format!("and {} more", tenants.len() - 10));
        }
        shown.join(", ")
    };
    match tenant {
        None if !tenants.is_empty() && !p.sources.contains_key(source) => {
            Err(Error::Usage(format!(
                "source `{source}` runs per tenant: add --tenant NAME (tenants: {})",
                listed()
            )))
        }
        None => Ok(source.to_string()),
        Some(t) if tenants.is_empty() => Err(Error::Usage(format!(
            "--tenant {t}: source `{source}` does not run per tenant"
        ))),
        Some(t) if !tenants.contains(&t) => {
            let hint = crate::check::suggest::did_you_mean(t, tenants.iter().copied())
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            Err(Error::Usage(format!(
                "--tenant {t}: no such tenant of source `{source}`{hint} (tenants: {})",
                listed()
            )))
        }
        Some(t) => Ok(crate::check::tenants::unit_name(source, t)),
    }
}

/// `hamstr try FILE SOURCE`.
pub fn try_source(file: &Path, args: &TryArgs, console: Console) -> Result<Outcome, Error> {
    let loaded = load::load(file, console)?;
    let p = &loaded.pipeline;
    let unit = unit_of(p, &args.source, args.tenant.as_deref())?;
    let Some(src) = p.sources.get(&unit) else {
        let hint =
            crate::check::suggest::did_you_mean(&args.source, p.sources.keys().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
        let known = p
            .sources
            .keys()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>();
        return Err(Error::Usage(format!(
            "no source `{}` in `{}`{hint} (sources: {})",
            args.source,
            file.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))?;
    let trial = rt.block_on(async {
        let stop = Stop::new();
        crate::runtime::stop_on_signals(stop.clone());
        let inspector =
            Inspector::new(p, &load::data_dir(&loaded, args.data_dir.as_deref()), stop)?;
        Ok::<_, Error>(inspector.trial(src, args.pages).await)
    })?;
    let failed = trial.error.is_some();
    match args.format {
        TryFormat::Json => {
            let text = serde_json::to_string(&trial)
                .map_err(|e| Error::Io(format!("cannot write the JSON: {e}")))?;
            super::print_stdout(&format!("{text}\n"))?;
        }
        TryFormat::Human => super::print_stdout(&render::human(&trial, render::width()))?,
    }
    if let Some(e) = &trial.error {
        eprintln!("error: {e}");
    }
    Ok(if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// The clients, the tape that watches their exchanges, and the pipeline they serve.
struct Inspector<'a> {
    p: &'a Pipeline,
    clients: BTreeMap<String, Arc<ServiceClient>>,
    tape: Arc<Tape>,
    masker: Masker,
    stop: Stop,
}

/// A source's pages fetched, or how far it got before a request failed.
struct Fetched {
    pages: Vec<PageTrial>,
    /// Every item of every page, for the null check.
    items: Vec<Json>,
    /// The records of the pages that `where` let through, as a child sees them.
    records: Vec<Map<String, Json>>,
    error: Option<String>,
}

impl<'a> Inspector<'a> {
    fn new(p: &'a Pipeline, data_dir: &Path, stop: Stop) -> Result<Inspector<'a>, Error> {
        let http = crate::nodes::net::http_client().map_err(Error::Io)?;
        let masker = Masker::new(p.secrets());
        let tape = Arc::new(Tape::watch());
        let mut clients = BTreeMap::new();
        for (name, svc) in &p.services {
            let client = ServiceClient::new(
                http.clone(),
                svc,
                masker.clone(),
                &TokenHome::Dir(data_dir.to_path_buf()),
            )
            .map_err(Error::Usage)?
            .with_tape(Some(tape.clone()));
            clients.insert(name.clone(), Arc::new(client));
        }
        Ok(Inspector {
            p,
            clients,
            tape,
            masker,
            stop,
        })
    }

    fn client(&self, src: &Source) -> Result<&Arc<ServiceClient>, String> {
        self.clients
            .get(&src.service)
            .ok_or_else(|| format!("source `{}`: no service `{}`", src.name, src.service))
    }

    /// Tries `src` for up to `pages` pages; a child source first takes its parent's
    /// first page for the records it would be called with.
    async fn trial(&self, src: &Source, pages: u64) -> Trial {
        let ex = Extractor::new(src);
        let mut trial = Trial {
            source: src.name.clone(),
            service: src.service.clone(),
            parent: None,
            pages: Vec::new(),
            flags: Vec::new(),
            error: None,
            fields: ex.names.to_vec(),
        };
        let mut parent_record = None;
        if let Some(parent) = &src.for_each {
            match self.parent_trial(src, parent).await {
                Ok((shown, first)) => {
                    trial.parent = Some(shown);
                    match first {
                        Some(first) => parent_record = Some(first),
                        None => return trial,
                    }
                }
                Err((shown, e)) => {
                    trial.parent = shown;
                    trial.error = Some(e);
                    return trial;
                }
            }
        }
        let fetched = self.fetch(src, &ex, parent_record.as_ref(), pages).await;
        trial.flags = flags::null_everywhere(src, &ex, &fetched.items, parent_record.as_ref());
        trial.pages = fetched.pages;
        trial.error = fetched.error;
        trial
    }

    /// The parent's first page, the requests its first records trigger for `child`, and
    /// the first of those records (none when the page held no record).
    async fn parent_trial(
        &self,
        child: &Source,
        parent: &str,
    ) -> Result<(ParentTrial, Option<Map<String, Json>>), (Option<ParentTrial>, String)> {
        let records = self.records_of(parent).await;
        let (page, records) = match records {
            Ok(r) => r,
            Err(e) => return Err((None, e)),
        };
        let mut shown = ParentTrial {
            source: parent.to_string(),
            page,
            requests: Vec::new(),
        };
        let client = match self.client(child) {
            Ok(c) => c,
            Err(e) => return Err((Some(shown), e)),
        };
        for record in records.iter().take(PARENT_RECORDS) {
            let ex = Extractor::new(child);
            let request = match Listing::new(child, client, &ex, &Default::default(), Some(record))
            {
                Ok(listing) => format!("{} {}", method(child), client.shown_url(listing.url())),
                Err(e) => format!("no request: {}", e.reason()),
            };
            shown.requests.push(Triggered {
                record: Json::Object(self.masked_record(record)),
                request,
            });
        }
        let first = records.into_iter().next();
        Ok((shown, first))
    }

    /// The records of `name`'s first page (for a child, called with its parent's first
    /// record), with the page as shown.
    async fn records_of(
        &self,
        name: &str,
    ) -> Result<(Option<PageTrial>, Vec<Map<String, Json>>), String> {
        let mut chain = vec![name.to_string()];
        while let Some(up) = self
            .p
            .sources
            .get(chain.last().map(String::as_str).unwrap_or_default())
            .and_then(|s| s.for_each.clone())
        {
            // `check` refuses cycles; the bound keeps a broken pipeline from looping.
            if chain.contains(&up) || chain.len() > self.p.sources.len() {
                return Err(format!("source `{name}`: its `for_each` chain loops"));
            }
            chain.push(up);
        }
        let mut parent: Option<Map<String, Json>> = None;
        let mut last_page = None;
        for source in chain.iter().rev() {
            let src = self
                .p
                .sources
                .get(source)
                .ok_or_else(|| format!("no source `{source}`"))?;
            let ex = Extractor::new(src);
            let fetched = self.fetch(src, &ex, parent.as_ref(), 1).await;
            if let Some(e) = fetched.error {
                return Err(format!("source `{source}` (the parent): {e}"));
            }
            last_page = fetched.pages.into_iter().next();
            if source == name {
                return Ok((last_page, fetched.records));
            }
            match fetched.records.into_iter().next() {
                Some(first) => parent = Some(first),
                None => return Ok((last_page, Vec::new())),
            }
        }
        Ok((last_page, Vec::new()))
    }

    /// Fetches up to `pages` pages of `src` and extracts their items.
    async fn fetch(
        &self,
        src: &Source,
        ex: &Extractor,
        parent: Option<&Map<String, Json>>,
        pages: u64,
    ) -> Fetched {
        let mut out = Fetched {
            pages: Vec::new(),
            items: Vec::new(),
            records: Vec::new(),
            error: None,
        };
        let client = match self.client(src) {
            Ok(c) => c.clone(),
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        let mut listing = match Listing::new(src, &client, ex, &Default::default(), parent) {
            Ok(listing) => listing,
            Err(e) => {
                out.error = Some(e.reason());
                return out;
            }
        };
        for n in 1..=pages {
            let req = match listing.request() {
                Ok(req) => req,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            self.tape.take_watched();
            let started = Instant::now();
            let fetched = client.fetch(&req, &self.stop).await;
            let mut page = PageTrial {
                page: n,
                exchanges: self.tape.take_watched(),
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                selected: 0,
                records: 0,
                passed: 0,
                sample: Vec::new(),
                rejected: Vec::new(),
                next: NextRequest::None,
            };
            let resp = match fetched {
                Ok(r) => r,
                Err(e) => {
                    out.pages.push(page);
                    out.error = Some(e.message);
                    return out;
                }
            };
            let repeated = listing.repeats_previous(&resp);
            let count = match ex.count(&resp.body, resp.records.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    out.pages.push(page);
                    out.error = Some(e);
                    return out;
                }
            };
            let next = if repeated {
                Next::Stop(
                    "the page repeated the previous one byte for byte (a pagination loop)".into(),
                )
            } else {
                listing.next(&resp, count, &client)
            };
            page.selected = count;
            let items = match ex.items(resp.body, resp.records) {
                Ok(items) => items,
                Err(e) => {
                    out.pages.push(page);
                    out.error = Some(e);
                    return out;
                }
            };
            for (i, item) in items.refs().into_iter().enumerate() {
                out.items.push(item.json().into_owned());
                match ex.record(item, parent) {
                    Ok(record) => {
                        page.records += 1;
                        // As the run writes it for the sinks, and hands it to children.
                        let mut json = Vec::new();
                        write_record_raw(&ex.heads, &record, &[], &mut json);
                        let fields = match serde_json::from_slice::<Json>(&json) {
                            Ok(Json::Object(m)) => m,
                            _ => Map::new(),
                        };
                        if page.sample.len() < JSON_RECORDS {
                            page.sample.push(self.masked_record(&fields));
                        }
                        if ex.passes(&record) {
                            page.passed += 1;
                            out.records.push(fields);
                        }
                    }
                    Err(r) => page.rejected.push(Rejected {
                        item: i + 1,
                        reason: self.masker.mask(&r.reason),
                    }),
                }
            }
            let more = matches!(next, Next::Fetch(_));
            page.next = match next {
                Next::Fetch(u) => NextRequest::Request {
                    request: format!("{} {}", method(src), client.shown_url(&u)),
                    fetched: n < pages,
                },
                Next::Done => NextRequest::Done,
                Next::Stop(w) | Next::Limit(w) => NextRequest::Stopped(w),
            };
            out.pages.push(page);
            if !more || self.stop.is_stopping() {
                break;
            }
        }
        out
    }

    fn masked_record(&self, record: &Map<String, Json>) -> Map<String, Json> {
        record
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::String(s) => Json::String(self.masker.mask(s)),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

fn method(src: &Source) -> &'static str {
    match src.method {
        crate::check::Method::Get => "GET",
        crate::check::Method::Post => "POST",
    }
}
